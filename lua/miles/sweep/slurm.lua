--- miles.sweep.slurm: a sweep's trials as Slurm job arrays (nothing is run).
--
--   local slurm = require "miles.sweep.slurm"
--   local written = slurm.write(trials, out, { partition = "gpu", time = "04:00:00",
--     cpus = 4, mem = "16G", gpus = 1, account = nil, array_max = 1000, throttle = nil,
--     host = "build/bin/miles", script = "experiments/run_trial.lua" })
--   -- written = {scripts = {...}, submit = "<out>/slurm/submit.sh"}
--
-- Files under <out>/slurm/: array_<k>.sbatch, one job array per at most array_max
-- trials (Slurm's MaxArraySize is 1001 by default), holding the trial folders in a
-- bash array; task i (#SBATCH --array=0-(n-1)) runs the trial at index i:
--   cd <repository>; exec <host> <script> <trial folder> $SLURM_CPUS_PER_TASK
-- Trials with `after` (MSLR, waiting for the unimodal stage) go into
-- array_after_<k>.sbatch files, which submit.sh submits with
-- --dependency=afterany:<the other arrays' job ids>. submit.sh submits them all:
--   sh <out>/slurm/submit.sh
-- Task output goes to <out>/slurm/logs/<job>_<task>.out (the trial's own log is
-- <trial>/output.log only for local runs). run_trial skips finished trials, so
-- submitting again after a partial run only redoes what is missing.
local fs = require "miles.fs"

local slurm = {}

-- The text of one array script for a list of trials.
local function script_text(name, list, root, logs, o)
  local q = fs.quote
  local n = #list
  local lines = {
    "#!/bin/bash",
    "# Written by miles.sweep: one Slurm array task per trial; submit with submit.sh beside it.",
    "#SBATCH --job-name=" .. name,
    ("#SBATCH --array=0-%d%s"):format(n - 1, o.throttle and ("%%" .. o.throttle) or ""),
    "#SBATCH --cpus-per-task=" .. (o.cpus or 1),
    "#SBATCH --output=" .. logs .. "/%A_%a.out",
  }
  if o.time then lines[#lines + 1] = "#SBATCH --time=" .. o.time end
  if o.mem then lines[#lines + 1] = "#SBATCH --mem=" .. o.mem end
  if o.partition then lines[#lines + 1] = "#SBATCH --partition=" .. o.partition end
  if o.account then lines[#lines + 1] = "#SBATCH --account=" .. o.account end
  if o.gpus then lines[#lines + 1] = "#SBATCH --gpus=" .. o.gpus end
  lines[#lines + 1] = "set -euo pipefail"
  lines[#lines + 1] = "cd " .. q(root)
  lines[#lines + 1] = "TRIALS=("
  for _, t in ipairs(list) do lines[#lines + 1] = "  " .. q(t.dir) end
  lines[#lines + 1] = ")"
  lines[#lines + 1] = 'TRIAL="${TRIALS[$SLURM_ARRAY_TASK_ID]}"'
  lines[#lines + 1] = ('exec %s %s "$TRIAL" "${SLURM_CPUS_PER_TASK:-1}"'):format(q(o.host), q(o.script))
  return table.concat(lines, "\n") .. "\n"
end

-- Split a list into chunks of at most k.
local function chunks(list, k)
  local out = {}
  for i = 1, #list, k do out[#out + 1] = table.move(list, i, math.min(i + k - 1, #list), 1, {}) end
  return out
end

--- Write the array scripts and submit.sh for the trials (those without
-- result.json); returns {scripts = {paths}, submit = path, trials = n}, or nil
-- when every trial is finished.
function slurm.write(trials, out, o)
  o = o or {}
  local array_max = o.array_max or 1000
  if math.type(array_max) ~= "integer" or array_max < 1 then
    error("slurm.write: array_max must be an integer >= 1, got " .. tostring(array_max), 2)
  end
  o = { partition = o.partition, time = o.time, cpus = o.cpus, mem = o.mem, gpus = o.gpus, account = o.account,
        throttle = o.throttle, host = o.host or "build/bin/miles", script = o.script or "experiments/run_trial.lua" }
  local first, after = {}, {}
  for _, t in ipairs(trials) do
    if not fs.exists(t.dir .. "/result.json") then
      local list = t.after and after or first
      list[#list + 1] = t
    end
  end
  if #first + #after == 0 then return nil end
  local dir = out .. "/slurm"
  fs.mkdir(dir .. "/logs")
  local root, logs = fs.absolute("."), fs.absolute(dir .. "/logs")
  local q = fs.quote
  local written = { scripts = {}, trials = #first + #after }
  local submit = { "#!/bin/sh", "# Submits the job arrays of this sweep (written by miles.sweep).", "set -e",
                   "cd " .. q(fs.absolute(dir)), "ids=" }
  for k, list in ipairs(chunks(first, array_max)) do
    local name = ("array_%d.sbatch"):format(k)
    fs.write(dir .. "/" .. name, script_text("miles-sweep", list, root, logs, o))
    written.scripts[#written.scripts + 1] = dir .. "/" .. name
    submit[#submit + 1] = ("id=$(sbatch --parsable %s | cut -d';' -f1); echo \"%s: job $id\"; ids=\"$ids:$id\"")
      :format(name, name)
  end
  for k, list in ipairs(chunks(after, array_max)) do
    local name = ("array_after_%d.sbatch"):format(k)
    fs.write(dir .. "/" .. name, script_text("miles-sweep-after", list, root, logs, o))
    written.scripts[#written.scripts + 1] = dir .. "/" .. name
    local dep = #first > 0 and "--dependency=afterany$ids " or ""
    submit[#submit + 1] = ("sbatch %s%s"):format(dep, name)
  end
  written.submit = dir .. "/submit.sh"
  fs.write(written.submit, table.concat(submit, "\n") .. "\n")
  return written
end

return slurm
