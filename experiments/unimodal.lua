-- Unimodal baselines (the paper's Table I): each modality of a data set trained
-- alone, its encoder plus one linear head (a fusion.Model of one encoder, vanilla
-- rule), the same encoders and settings as the demo's multimodal runs. Prints
-- the test metric of each modality at its best validation epoch.
--
--   build/bin/miles experiments/unimodal.lua [dataset] [epochs] [log_root]
--
-- dataset: as miles.experiment.dataset ("spoken_fashion:easy" by default,
-- "spoken_fashion:hard", "toy", "smnist:DIR", ...); epochs: 10 by default;
-- log_root: if given, each run logs into log_root/<modality>.
local miles = require "miles"
local experiment = require "miles.experiment"

local which = arg[1] or "spoken_fashion:easy"
local epochs = math.tointeger(tonumber(arg[2] or "10"))
if not epochs or epochs < 1 then error("unimodal: epochs must be a positive integer, got " .. tostring(arg[2]), 0) end
local log_root = arg[3]

local ds, kind = experiment.dataset(which)
local names = experiment.modalities(ds)
print(("unimodal baselines on %s: %d epochs each, modalities %s"):format(which, epochs,
  table.concat(names, ", ")))

for _, name in ipairs(names) do
  local s = experiment.run({ dataset = which, modalities = { name }, rule = "vanilla", epochs = epochs,
    log_dir = log_root and (log_root .. "/" .. name) or nil }, ds, kind)
  print(("  %-8s test %s %.4f (val %.4f, best epoch %d, %.0f s)"):format(name, s.metric, s.test.fused,
    s.val.fused, s.best_epoch, s.seconds))
end
