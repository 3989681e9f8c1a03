-- Table V of the paper: MILES across values of mu (the reduction factor), tau
-- fixed at 0.2, for concatenation and summation fusion; mu = 1 switches MILES
-- off (Eq. 3's losses stay). Test metrics, Δ, mean ± std over seeds.
--
--   build/bin/miles experiments/ablation_mu.lua --dataset spoken_fashion --epochs 5 --seeds 0,1,2
--
-- Flags: --dataset NAME, --epochs N, --seeds LIST, --trials N (1 = lr 1e-3, as
-- the paper fixes the learning rate; N > 1 searches the lr per value), --lr X,
-- --values 1,0.75,... (default the paper's), --fusion concat,sum, --workers N,
-- --out DIR (default runs/ablation_mu), --md, --json, --gather, --slurm; --help.
package.path = "./experiments/?.lua;" .. package.path
require("lib.study").ablation{ name = "ablation_mu", title = "Table V: MILES across mu (tau = 0.2)",
  key = "mu", symbol = "μ", values = { 1.0, 0.75, 0.5, 0.25, 0.1, 0.05, 0.01 }, fixed = { tau = 0.2 } }
