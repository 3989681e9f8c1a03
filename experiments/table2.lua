-- Table II of the paper: vanilla, the seven baselines and MILES with
-- concatenation fusion on one data set; test metric of the fused head, of each
-- modality's head and their gap (Δ), mean ± std over seeds, for each method's
-- selected configuration (best mean fused validation metric).
--
--   build/bin/miles experiments/table2.lua --dataset spoken_fashion --epochs 5 --seeds 0,1,2
--
-- Flags: --dataset NAME, --epochs N, --seeds 0,1,2, --trials N (the budget:
-- 1 = each method's default hyper-parameters; N > 1 = random search of N
-- configurations, see miles.sweep.space), --methods a,b (default all nine),
-- --lr X (fix the learning rate), --workers N, --threads N, --out DIR (default
-- runs/table2; resumable), --md FILE, --json FILE (default <out>/table2.md,
-- .json), --gather (report only), --slurm (write job arrays; then --gather),
-- Slurm options; --help lists them all with defaults.
package.path = "./experiments/?.lua;" .. package.path
require("lib.study").table{ name = "table2", fusion = "concat",
  title = "Table II: test metrics with concatenation fusion" }
