--- miles.sweep: the paper's random hyper-parameter search (Sec. IV-B), run as
-- parallel worker processes on this machine or as Slurm job arrays.
--
--   local sweep = require "miles.sweep"
--   local opts = { out = "runs/sweep", datasets = { "spoken_fashion" }, fusions = { "concat" },
--     methods = { "vanilla", "miles" }, trials = 4, seeds = { 0, 1 }, epochs = 5 }
--   local cells = sweep.run(opts, { workers = 2 })   -- trains what is missing
--   sweep.slurm(opts, { time = "04:00:00" })          -- or: Slurm job arrays, nothing run
--   cells = sweep.gather("runs/sweep")                -- selection (miles.sweep.report prints it)
--   sweep.run_trial("runs/sweep/spoken_fashion/concat/miles/c02-s1")  -- one trial
--
-- Options (opts): out (the sweep's folder, required); the cells, either
-- cells = {{method =, dataset =, fusion =, label =, title =, trials =, fixed =}, ...}
-- (label: the folder name, default the method; fixed = {lr =, rule_opts = {}}
-- overrides the sampled values: ablations) or the grid of datasets (or dataset),
-- fusions (or fusion) and methods; trials (configurations per cell, default 1;
-- miles.sweep.space says what is sampled), seeds (default {0}: each configuration
-- runs once per seed), epochs (10), batch_size (64), sample_seed (0, the
-- sampler's), fixed (for every cell), keep_checkpoints (false), device ("cpu"),
-- autocast (nil: the trials train under bf16 autocast when true).
-- Cells of MSLR methods get the unimodal stage of their data set (the cell
-- "<dataset>/unimodal/search", see miles.sweep.space) and wait for it.
--
-- Layout of <out>: sweep.json (the manifest: cells and trials; runs into the same
-- folder add to it) and one folder per trial, <out>/<id> with id
-- "<dataset>/<fusion>/<label>/c<NN>-s<seed>": config.json (what experiment.run
-- gets), and once started output.log, attempts.log (one line per start),
-- worker.pid, the trainer's log.csv / log.jsonl / summary.json, its checkpoint
-- while it runs and result.json when done (written atomically; the checkpoint is
-- then deleted unless keep_checkpoints). A trial is finished iff result.json
-- exists: runs skip finished trials and restart the others, from their
-- checkpoint when there is one (miles.sweep.pool: a killed sweep, even by SIGKILL,
-- resumes; workers it left running are adopted, not started twice).
-- Selection: miles.sweep.gather (best mean fused validation metric over seeds).
local fs = require "miles.fs"
local experiment = require "miles.experiment"
local core = require "miles.core"
local plan = require "miles.sweep.plan"
local files = require "miles.sweep.files"
local pool = require "miles.sweep.pool"
local slurm = require "miles.sweep.slurm"
local gather = require "miles.sweep.gather"

local sweep = {}

--- The methods of the paper's Tables II and III in its row order, their row
-- titles, and the rules the sweep provides itself (miles.sweep.plan).
sweep.METHODS, sweep.TITLES, sweep.STAGE_RULES = plan.METHODS, plan.TITLES, plan.STAGE_RULES

--- The plan of a sweep: {out, cells, trials}; each trial {id, dir, cell, index,
-- seed, after, config} (config: the content of its config.json). Writes nothing.
function sweep.plan(opts)
  return plan.make(opts, 2)
end

--- Write the plan's trial folders, their config.json and the manifest (a trial
-- folder whose config.json differs from the plan's is an error).
sweep.prepare = plan.prepare

--- The number of processors online here (1 when it cannot be told).
function sweep.cores()
  return math.tointeger(tonumber(fs.capture("nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null"))) or 1
end

-- The default host binary: the running one (arg[-1]) or build/bin/miles.
local function host()
  local h = arg and arg[-1]
  if type(h) == "string" and h:find("miles", 1, true) then return h end
  return "build/bin/miles"
end

-- A metric as a percentage ("-" when missing).
local function pct(x)
  return type(x) == "number" and x == x and ("%.1f"):format(100 * x) or "-"
end

-- A line about a finished trial.
local function done_line(t)
  local r = files.read_json(t.dir .. "/result.json")
  return ("done    %s  val %s  test %s  best epoch %s  (%.1f s)"):format(t.id, pct((r.val or {}).fused),
    pct((r.test or {}).fused), tostring(r.best_epoch), r.seconds)
end

-- Claim <out>/sweep.pid for this process (the parent of the shell popen starts);
-- an error when another live sweep holds it. Returns the file's path.
local function claim(out)
  local path = out .. "/sweep.pid"
  local me = math.tointeger(tonumber(fs.capture("echo $PPID")))
  local other = math.tointeger(tonumber(fs.read(path) or ""))
  local args = other and other ~= me and pool.alive({ other })[other]
  if args and args:find("miles", 1, true) then
    error(("sweep: another sweep (pid %d) is running in %s; wait for it, or stop it and run again"):format(other,
      out), 3)
  end
  fs.write(path, me .. "\n")
  return path
end

-- The last n lines of a file.
local function tail(path, n)
  local lines = {}
  for line in (fs.read(path) or ""):gmatch("[^\n]+") do lines[#lines + 1] = line end
  return table.concat(lines, "\n", math.max(1, #lines - n + 1))
end

--- Plan, prepare and run the trials that are not finished, `workers` at a
-- time. ropts: workers (default: the cores), threads per worker (default
-- cores // workers, at least 1), host (the miles binary), script
-- (experiments/run_trial.lua), quiet (no progress lines), print (default print).
-- Returns the gathered cells of the plan and the pool's counts {done, failed =
-- {trials}, started, adopted}. <out>/sweep.pid names the running sweep: a second
-- sweep started on the same folder meanwhile is refused.
function sweep.run(opts, ropts)
  ropts = ropts or {}
  local p = plan.make(opts, 2)
  plan.prepare(p)
  local cores = sweep.cores()
  local workers = ropts.workers or cores
  local say = ropts.quiet and function() end or ropts.print or print
  local total, finished = #p.trials, 0
  for _, t in ipairs(p.trials) do
    if fs.exists(t.dir .. "/result.json") then finished = finished + 1 end
  end
  say(("sweep %s: %d trials, %d finished, %d worker(s)"):format(p.out, total, finished, workers))
  local lock = claim(p.out)
  local ok, res = pcall(pool.run, p.trials, {
    workers = workers, threads = ropts.threads or math.max(1, cores // math.max(1, workers)),
    host = ropts.host or host(), script = ropts.script,
    on_event = function(kind, t)
      if kind == "done" then
        finished = finished + 1
        say(("[%d/%d] %s"):format(finished, total, done_line(t)))
      elseif kind == "failed" then
        say(("FAILED  %s (%s/output.log):\n%s"):format(t.id, t.dir, tail(t.dir .. "/output.log", 8)))
      else
        say(("%-7s %s"):format(kind, t.id))
      end
    end,
  })
  os.remove(lock)
  if not ok then error(res, 0) end
  local ids = {}
  for i, c in ipairs(p.cells) do ids[i] = c.id end
  return sweep.gather(p.out, ids), res
end

--- Plan and prepare, then write Slurm job arrays for the trials that are not
-- finished (miles.sweep.slurm; sopts: partition, time, cpus, mem, gpus,
-- account, array_max, throttle, host, script). Runs nothing. Returns what
-- slurm.write returns (nil when every trial is finished) and the plan.
function sweep.slurm(opts, sopts)
  local p = plan.make(opts, 2)
  plan.prepare(p)
  sopts = sopts or {}
  local o = {}
  for k, v in pairs(sopts) do o[k] = v end
  o.host = o.host or host()
  return slurm.write(p.trials, p.out, o), p
end

--- The summaries of the cells of the sweep in `out` (all, or those whose ids
-- are in `only`, in that order): see miles.sweep.gather.
function sweep.gather(out, only)
  out = out:gsub("/+$", "")
  local manifest = files.read_json(out .. "/sweep.json")
  if not manifest then error("sweep.gather: no sweep.json in " .. out .. " (not a sweep folder?)", 2) end
  return gather.cells(manifest, out, only)
end

-- Per modality: {value, epoch} of the head's best validation metric in history.
local function best_heads(summary)
  local out = {}
  for name in pairs(summary.val or {}) do
    if name ~= "fused" and name ~= "delta" then
      local key = "val_" .. summary.metric .. "_" .. name
      for _, row in ipairs(summary.history or {}) do
        local v = row[key]
        if type(v) == "number" and v == v and (not out[name] or v > out[name].value) then
          out[name] = { value = v, epoch = row.epoch }
        end
      end
    end
  end
  return out
end

-- The sweep folder that holds trial folder dir (its config id says how deep).
local function root_of(dir, id)
  dir = dir:gsub("/+$", "")
  if dir == id then return "." end
  if dir:sub(-#id - 1) ~= "/" .. id then
    error(("sweep: trial folder %s does not end with its id %s (moved?)"):format(dir, id), 3)
  end
  return dir:sub(1, -#id - 2)
end

--- Run the trial in folder dir (config.json -> experiment.run -> result.json);
-- threads: the CPU threads to use (optional). A finished trial is not run again:
-- its result is returned with "finished". A checkpoint in the folder is resumed.
function sweep.run_trial(dir, threads)
  local done = files.read_json(dir .. "/result.json")
  if done then return done, "finished" end
  local cfg = files.read_json(dir .. "/config.json")
  if not cfg then error("sweep.run_trial: no config.json in " .. dir, 2) end
  if threads then core.set_num_threads(threads) end
  local run = cfg.run
  if cfg.unimodal_lrs then
    local root = root_of(dir, cfg.id)
    local lrs = gather.unimodal_lrs(files.read_json(root .. "/sweep.json") or {}, root, cfg.unimodal_lrs)
    if not lrs then
      error(("sweep.run_trial: %s needs the learning rates of the unimodal stage %s, which has no complete" ..
        " configuration yet"):format(cfg.id, cfg.unimodal_lrs), 2)
    end
    run.rule_opts.lrs = lrs
  end
  local ckpt = dir .. "/checkpoint.safetensors"
  local resumed = fs.exists(ckpt)
  files.append(dir .. "/attempts.log", os.date("!%Y-%m-%dT%H:%M:%SZ start") .. (resumed and " (resuming)" or ""))
  local args = {}
  for k, v in pairs(run) do args[k] = v end
  if sweep.STAGE_RULES[run.rule] then args.rule = require(sweep.STAGE_RULES[run.rule])(run.rule_opts) end
  args.log_dir, args.checkpoint, args.quiet = dir, ckpt, true
  local s = experiment.run(args)
  local result = { id = cfg.id, config = cfg, metric = s.metric, best_epoch = s.best_epoch, epochs = s.epochs,
                   val = s.val, test = s.test, best_head = best_heads(s), seconds = s.seconds, resumed = resumed,
                   threads = core.get_num_threads() }
  files.write_json(dir .. "/result.json", result)
  if not cfg.keep_checkpoints then
    for _, p in ipairs({ ckpt, ckpt .. ".json", dir .. "/checkpoint.best.safetensors",
                         dir .. "/checkpoint.best.safetensors.json" }) do os.remove(p) end
  end
  return result
end

return sweep
