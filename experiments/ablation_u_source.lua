-- Table VI of the paper: MILES computing the utilization rates u from training
-- metrics vs validation metrics (rule option source), with the epoch of the
-- selected model; as in the paper, the other hyper-parameters (lr, tau, mu) are
-- tuned per variant when --trials N > 1 (the same sampled values for both).
--
--   build/bin/miles experiments/ablation_u_source.lua --dataset spoken_fashion --trials 4 --epochs 5
--
-- Flags: --dataset NAME, --epochs N, --seeds LIST, --trials N (1 = defaults),
-- --lr X, --values train,val, --fusion concat,sum, --workers N, --out DIR
-- (default runs/ablation_u_source), --md, --json, --gather, --slurm; --help.
package.path = "./experiments/?.lua;" .. package.path
require("lib.study").ablation{ name = "ablation_u_source", title = "Table VI: u from training vs validation metrics",
  key = "source", values = { "train", "val" }, best_epoch = true }
