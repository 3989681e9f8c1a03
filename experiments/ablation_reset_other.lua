-- MILES as Algorithm 1 is printed (reset_other = false: the rate of the modality
-- not slowed keeps its previous value) vs resetting it to the global rate every
-- epoch (reset_other = true, as one public re-implementation does): a question
-- the paper leaves open (docs/BASELINES.md). Test metrics, Δ and the best epoch,
-- mean ± std over seeds; with --trials N > 1, lr, tau and mu are searched per
-- variant (the same sampled values for both).
--
--   build/bin/miles experiments/ablation_reset_other.lua --dataset spoken_fashion --epochs 5 --seeds 0,1,2
--
-- Flags: --dataset NAME, --epochs N, --seeds LIST, --trials N (1 = defaults),
-- --lr X, --values false,true, --fusion concat,sum, --workers N, --out DIR
-- (default runs/ablation_reset_other), --md, --json, --gather, --slurm; --help.
package.path = "./experiments/?.lua;" .. package.path
require("lib.study").ablation{ name = "ablation_reset_other", title = "MILES: reset_other false (as printed) vs true",
  key = "reset_other", values = { false, true }, best_epoch = true }
