-- Table IV of the paper: MILES across values of tau (the target difference
-- threshold), mu fixed at 0.5, for concatenation and summation fusion; test
-- metric of the fused head and each modality's head, Δ, mean ± std over seeds.
--
--   build/bin/miles experiments/ablation_tau.lua --dataset spoken_fashion --epochs 5 --seeds 0,1,2
--
-- Flags: --dataset NAME, --epochs N, --seeds LIST, --trials N (1 = lr 1e-3, as
-- the paper fixes the learning rate; N > 1 searches the lr per value), --lr X,
-- --values 0.5,0.3,... (default the paper's), --fusion concat,sum, --workers N,
-- --out DIR (default runs/ablation_tau), --md, --json, --gather, --slurm; --help.
package.path = "./experiments/?.lua;" .. package.path
require("lib.study").ablation{ name = "ablation_tau", title = "Table IV: MILES across tau (mu = 0.5)",
  key = "tau", symbol = "τ", values = { 0.5, 0.3, 0.2, 0.1, 0.0 }, fixed = { mu = 0.5 } }
