-- The sweep runner's command line (miles.sweep): the paper's random
-- hyper-parameter search, N configurations per method, data set and fusion, each
-- run once per seed, in parallel worker processes or as Slurm job arrays; the
-- configuration with the best mean fused validation metric is selected and its
-- test metrics reported.
--
--   build/bin/miles experiments/sweep.lua run    --dataset spoken_fashion --methods vanilla,miles \
--       --fusion concat --trials 4 --epochs 5 --seeds 0,1 --workers 2 --out runs/sweep
--   build/bin/miles experiments/sweep.lua slurm  (same flags, plus --partition, --time, ...)
--   build/bin/miles experiments/sweep.lua gather --out runs/sweep
--   build/bin/miles experiments/sweep.lua space  (prints the search ranges)
--
-- run: trains the trials that are not finished (a sweep interrupted by Ctrl-C or
-- killed resumes: run the same command again), then prints the summary. slurm (or
-- run --slurm): writes <out>/slurm/array_*.sbatch and submit.sh (sh
-- <out>/slurm/submit.sh submits them) plus every trial's config.json; runs
-- nothing. gather: reads <out>/sweep.json and every result.json. run and gather
-- write <out>/summary.md and <out>/summary.json (or --md, --json).
-- Flags: --dataset, --methods (all = the paper's nine), --fusion, --trials,
-- --epochs, --seeds, --workers, --threads, --batch-size, --device, --autocast, --lr, --sample-seed,
-- --out, --keep-checkpoints, --md, --json and the Slurm ones (--partition, --time,
-- --cpus, --mem, --gpus, --account, --array-max, --throttle); defaults in --help.
package.path = "./experiments/?.lua;" .. package.path
local sweep = require "miles.sweep"
local space = require "miles.sweep.space"
local cli = require "lib.cli"
local study = require "lib.study"

local FLAGS = { "dataset", "methods", "fusion", "trials", "epochs", "seeds", "workers", "threads", "batch_size", "device", "autocast",
                "lr", "sample_seed", "out", "keep_checkpoints", "md", "json", "slurm", "partition", "time",
                "cpus", "mem", "gpus", "account", "array_max", "throttle" }
local o = cli.parse(arg, FLAGS, { dataset = { "spoken_fashion" }, methods = { "vanilla", "miles" },
  fusion = { "concat" }, trials = 4, epochs = 10, seeds = { 0 }, out = "runs/sweep" })
local cmd = o.slurm and "slurm" or o[1]
if o.methods[1] == "all" then o.methods = sweep.METHODS end

if cmd == "space" then
  for _, line in ipairs(space.describe()) do print(line) end
elseif cmd == "run" or cmd == "slurm" or cmd == "gather" then
  o.slurm, o.gather = cmd == "slurm", cmd == "gather"
  local ok, cells = pcall(function()
    if cmd == "gather" then return sweep.gather(o.out) end
    return study.execute(o, study.sweep_opts(o))
  end)
  if not ok then cli.fail(study.message(cells)) end
  if cells then
    study.report(cells, o, "summary", "Sweep " .. o.out, { best_epoch = true, val = true, config = true, progress = true })
  end
else
  cli.fail("usage: build/bin/miles experiments/sweep.lua run|slurm|gather|space [flags] (see --help)")
end
