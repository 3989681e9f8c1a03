-- Runs one trial of a sweep: <trial folder>/config.json -> experiment.run ->
-- <trial folder>/result.json (atomically). A finished trial (result.json exists)
-- is not run again; a checkpoint left by an interrupted run is resumed. The sweep
-- runner (miles.sweep, experiments/sweep.lua) and its Slurm job arrays start one
-- such process per trial; it can also be run by hand:
--
--   build/bin/miles experiments/run_trial.lua <trial folder> [threads]
--
-- threads: the CPU threads of this process (default: the runtime's default).
local sweep = require "miles.sweep"

local dir, threads = arg[1], arg[2]
if not dir or dir == "--help" or dir == "-h" then
  io.stderr:write("usage: build/bin/miles experiments/run_trial.lua <trial folder> [threads]\n")
  os.exit(dir and 0 or 2)
end
local n = threads and math.tointeger(tonumber(threads))
if threads and (not n or n < 1) then
  io.stderr:write("run_trial: threads must be an integer >= 1, got " .. threads .. "\n")
  os.exit(2)
end
local r, status = sweep.run_trial(dir, n)
local function metric(split) return r[split] and ("%.4f"):format(r[split].fused) or "-" end
print(("%s %s: val %s test %s best epoch %s (%.1f s)"):format(r.id, status or "done", metric("val"),
  metric("test"), tostring(r.best_epoch), r.seconds))
