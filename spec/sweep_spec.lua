-- Specs of miles.sweep: the sampler (reference values, determinism, ranges), the
-- selection over crafted results, the unimodal stage's rates reaching an MSLR
-- trial, a tiny sweep end to end on the toy data set with two worker processes,
-- a sweep killed with SIGKILL (parent and workers) and resumed, a killed parent
-- whose live worker is adopted, and the Slurm job arrays.
local fs = require "miles.fs"
local H = require "helpers"
local sweep = require "miles.sweep"
local space = require "miles.sweep.space"
local files = require "miles.sweep.files"
local report = require "miles.sweep.report"
local pool = require "miles.sweep.pool"

local HOST = "build/bin/miles"

local function opts(out, extra)
  local o = { out = out, datasets = { "toy" }, fusions = { "concat" }, methods = { "vanilla", "miles" },
              trials = 2, seeds = { 0 }, epochs = 2 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function trial_dirs(out, pattern)
  local list = {}
  local p = io.popen("ls -d " .. out .. "/" .. pattern .. " 2>/dev/null")
  for line in p:lines() do list[#list + 1] = line end
  p:close()
  return list
end

local function lines_of(path)
  local n = {}
  for line in (fs.read(path) or ""):gmatch("[^\n]+") do n[#n + 1] = line end
  return n
end

-- Wait (up to `seconds`) until cond() holds; returns whether it did.
local function wait_for(cond, seconds)
  for _ = 1, seconds * 20 do
    if cond() then return true end
    os.execute("sleep 0.05")
  end
  return cond()
end

-- SIGKILL the pids and wait until they are gone (a killed process takes a
-- moment to exit: unmapping a large address space is not instant).
local function kill_and_wait(pids)
  os.execute("kill -9 " .. table.concat(pids, " ") .. " 2>/dev/null")
  assert.is_true(wait_for(function() return next(pool.alive(pids)) == nil end, 10), "killed processes linger")
end

-- Start `build/bin/miles experiments/sweep.lua run ...` in the background; returns its pid.
local function start_sweep(out, epochs, trials)
  local pidfile = out .. ".pid"
  os.execute(("%s experiments/sweep.lua run --dataset toy --methods vanilla,miles --trials %d --epochs %d" ..
    " --workers 2 --threads 1 --out %s > %s.log 2>&1 & echo $! > %s"):format(HOST, trials, epochs, out, out, pidfile))
  return math.tointeger(tonumber(H.read_file(pidfile):match("%d+")))
end

describe("miles.sweep.space", function()
  it("SplitMix64 gives the reference generator's outputs", function()
    -- the first two outputs of SplitMix64 seeded with 0 (Vigna's splitmix64.c)
    assert.are.equal(("%x"):format(0xe220a8397b1dcdaf), ("%x"):format(space.splitmix64(0)))
    assert.are.equal(("%x"):format(0x6e789e6aa1b965f4), ("%x"):format(space.splitmix64(0x9e3779b97f4a7c15)))
  end)

  it("configuration 1 is the defaults; the others are the same for the same key and index", function()
    assert.are.same({ lr = 1e-3, rule_opts = {} }, space.sample("miles", "0|toy|concat|miles", 1))
    local a = space.sample("miles", "0|toy|concat|miles", 5)
    assert.are.same(a, space.sample("miles", "0|toy|concat|miles", 5))
    assert.are_not.same(a, space.sample("miles", "1|toy|concat|miles", 5))
    -- fixed values win; the others stay as sampled
    local f = space.sample("miles", "0|toy|concat|miles", 5, { lr = 5e-4, rule_opts = { tau = 0.0 } })
    assert.are.same({ lr = 5e-4, rule_opts = { tau = 0.0, mu = a.rule_opts.mu } }, f)
  end)

  it("draws within the documented ranges (lr log-uniform, choices, integers)", function()
    local below, taus = 0, {}
    for i = 2, 401 do
      local m = space.sample("miles", "range", i)
      assert.is_true(m.lr >= 1e-4 and m.lr <= 1e-2, "lr " .. m.lr)
      if m.lr < 1e-3 then below = below + 1 end
      taus[m.rule_opts.tau] = true
      assert.is_true(({ [0.1] = 1, [0.25] = 1, [0.5] = 1, [0.75] = 1 })[m.rule_opts.mu] ~= nil)
      local p = space.sample("mses", "range", i).rule_opts.patience
      assert.are.equal("integer", math.type(p))
      assert.is_true(p >= 3 and p <= 10)
      local alpha = space.sample("ogm", "range", i).rule_opts.alpha
      assert.is_true(alpha >= 0.1 and alpha <= 0.8)
    end
    -- log-uniform on [1e-4, 1e-2]: half the draws below 1e-3
    assert.is_true(below > 160 and below < 240, "draws below 1e-3: " .. below)
    assert.are.same({ [0.0] = true, [0.05] = true, [0.1] = true, [0.2] = true, [0.3] = true, [0.5] = true }, taus)
  end)

  it("keeps earlier configurations when the budget grows, and names bad methods", function()
    local small = sweep.plan(opts("/nonexistent", { trials = 2 }))
    local big = sweep.plan(opts("/nonexistent", { trials = 4 }))
    for i = 1, 2 do assert.are.same(small.trials[i].config, big.trials[i].config) end
    assert.are.equal(8, #big.trials)
    assert.is_nil(small.trials[1].config.run.autocast)
    local amp = sweep.plan(opts("/nonexistent", { trials = 2, device = "cuda", autocast = true }))
    assert.is_true(amp.trials[1].config.run.autocast) -- what the trial's trainer is given
    assert.are.equal("cuda", amp.trials[1].config.run.device)
    assert.matches("no search space for method 'bogus'", H.error_of(sweep.plan, opts("/x", { methods = { "bogus" } })))
    assert.matches("fusion must be 'concat' or 'sum', got cat",
      H.error_of(sweep.plan, opts("/x", { fusions = { "cat" } })))
  end)
end)

describe("miles.sweep selection", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rmdir(dir) end)

  -- Write a result.json with the given fused val / test values (and best heads).
  local function result(out, id, val, test, heads)
    local cfg = files.read_json(out .. "/" .. id .. "/config.json")
    files.write_json(out .. "/" .. id .. "/result.json", { id = id, config = cfg, metric = "accuracy",
      best_epoch = 2, val = { fused = val, audio = val, image = val / 2, delta = val / 2 },
      test = { fused = test, audio = test, image = test / 2, delta = test / 2 }, best_head = heads or {} })
  end

  it("selects the complete configuration with the best mean fused val metric; test mean ± std", function()
    local plan = sweep.plan(opts(dir, { methods = { "vanilla" }, trials = 3, seeds = { 0, 1 } }))
    sweep.prepare(plan)
    local c = "toy/concat/vanilla/"
    result(dir, c .. "c01-s0", 0.80, 0.60); result(dir, c .. "c01-s1", 0.90, 0.90)   -- mean val 0.85
    result(dir, c .. "c02-s0", 0.88, 0.70); result(dir, c .. "c02-s1", 0.86, 0.74)   -- mean val 0.87
    result(dir, c .. "c03-s0", 0.99, 0.99)                                            -- seed 1 missing
    local cells = sweep.gather(dir)
    assert.are.equal(1, #cells)
    local s = cells[1]
    assert.are.same({ 6, 5, 3, 2 }, { s.trials, s.finished, s.configs, s.complete })
    assert.are.equal(2, s.selected.index)
    assert.are.same({ 0, 1 }, s.selected.seeds)
    assert.is_true(math.abs(s.selected.val.fused.mean - 0.87) < 1e-12)
    assert.is_true(math.abs(s.selected.test.fused.mean - 0.72) < 1e-12)
    assert.is_true(math.abs(s.selected.test.fused.std - math.sqrt(0.0008)) < 1e-12)
    assert.is_true(math.abs(s.selected.test.image.mean - 0.36) < 1e-12)
    assert.are.equal(plan.trials[3].config.run.lr, s.selected.lr)
    assert.matches("\n| Vanilla | 72.0 ± 2.8 | 72.0 ± 2.8 | 36.0 ± 1.4 | 36.0 ± 1.4 |",
      report.markdown(report.table(cells)), 1, true)
  end)

  it("gives an MSLR trial each modality's best rate from the unimodal stage", function()
    local plan = sweep.plan(opts(dir, { methods = { "mslr_k" }, trials = 2, seeds = { 0, 1 } }))
    sweep.prepare(plan)
    assert.are.equal("toy/unimodal/search", plan.cells[1].id)
    local u = "toy/unimodal/search/"
    local function heads(a, i) return { audio = { value = a, epoch = 1 }, image = { value = i, epoch = 2 } } end
    result(dir, u .. "c01-s0", 0.5, 0.5, heads(0.9, 0.3)); result(dir, u .. "c01-s1", 0.5, 0.5, heads(0.8, 0.5))
    result(dir, u .. "c02-s0", 0.5, 0.5, heads(0.7, 0.6)); result(dir, u .. "c02-s1", 0.5, 0.5, heads(0.7, 0.5))
    local lr2 = plan.trials[3].config.run.lr   -- configuration 2 of the stage
    local r = sweep.run_trial(dir .. "/toy/concat/mslr_k/c02-s1")
    assert.are.same({ audio = 1e-3, image = lr2 }, r.config.run.rule_opts.lrs)
    assert.are.equal("mslr_k", r.config.run.rule)
    assert.is_true(fs.exists(dir .. "/toy/concat/mslr_k/c02-s1/result.json"))
    assert.is_false(fs.exists(dir .. "/toy/concat/mslr_k/c02-s1/checkpoint.safetensors"))
    assert.matches("audio lr 0.001 (val 85.0 ± 7.1, configuration 1)", report.unimodal(sweep.gather(dir))[1], 1, true)
  end)
end)

describe("miles.sweep runs", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rmdir(dir); os.remove(dir .. ".pid"); os.remove(dir .. ".log") end)

  it("runs a tiny sweep with two workers, selects by val, and skips finished trials", function()
    local cells, res = sweep.run(opts(dir), { workers = 2, threads = 1, host = HOST, quiet = true })
    assert.are.same({ 4, 0, 4, 0 }, { res.done, #res.failed, res.started, res.adopted })
    for _, cell in ipairs(cells) do
      -- the selected configuration is the one with the larger val metric in the files
      local best, best_val
      for i = 1, 2 do
        local r = files.read_json(("%s/%s/c%02d-s0/result.json"):format(dir, cell.id, i))
        assert.are.equal(2, r.epochs)
        if not best or r.val.fused > best_val then best, best_val = r, r.val.fused end
      end
      assert.are.equal(best.config.index, cell.selected.index)
      assert.are.equal(best.test.fused, cell.selected.test.fused.mean)
      assert.are.equal(best.test.audio, cell.selected.test.audio.mean)
    end
    local text = report.text(report.table(cells))
    assert.matches("\nVanilla ", text, 1, true)
    assert.matches("\n+ MILES ", text, 1, true)
    local _, again = sweep.run(opts(dir), { workers = 2, host = HOST, quiet = true })
    assert.are.same({ 0, 0 }, { again.started, again.done })
    assert.matches("exists with another configuration",
      H.error_of(sweep.run, opts(dir, { epochs = 3 }), { host = HOST, quiet = true }))
  end)

  it("resumes a sweep killed with SIGKILL (parent and workers): finished trials run exactly once", function()
    local pid = start_sweep(dir, 30, 3)
    local all = "toy/concat/*/c*-s0"
    -- wait until a trial is finished and an unfinished one is a few epochs in (checkpoint written)
    assert.is_true(wait_for(function()
      local finished, mid = false, false
      for _, d in ipairs(trial_dirs(dir, all)) do
        if fs.exists(d .. "/result.json") then finished = true
        elseif fs.exists(d .. "/checkpoint.safetensors") and #lines_of(d .. "/log.jsonl") <= 20 then mid = true end
      end
      return finished and mid
    end, 20), "no trial finished")
    -- the parent, and each worker still running a trial of this sweep (checked with ps)
    local kill, pids = { pid }, {}
    for _, d in ipairs(trial_dirs(dir, all)) do pids[#pids + 1] = math.tointeger(tonumber(fs.read(d .. "/worker.pid"))) end
    for p, args in pairs(pool.alive(pids)) do
      if args:find("run_trial.lua " .. dir, 1, true) then kill[#kill + 1] = p end
    end
    kill_and_wait(kill)
    local before, resumable = {}, {}
    for _, d in ipairs(trial_dirs(dir, all)) do
      before[d] = fs.read(d .. "/result.json")
      if not before[d] and fs.exists(d .. "/checkpoint.safetensors") then resumable[#resumable + 1] = d end
    end
    local n_before = 0
    for _ in pairs(before) do n_before = n_before + 1 end
    assert.is_true(n_before >= 1 and n_before < 6 and #resumable >= 1)

    local cells = sweep.run(opts(dir, { trials = 3, epochs = 30 }), { workers = 2, threads = 1, host = HOST,
                                                                    quiet = true })
    local dirs = trial_dirs(dir, all)
    assert.are.equal(6, #dirs)
    for _, d in ipairs(dirs) do
      assert.is_true(fs.exists(d .. "/result.json"), d)
      if before[d] then
        assert.are.equal(before[d], fs.read(d .. "/result.json"))
        assert.are.equal(1, #lines_of(d .. "/attempts.log"))
      end
    end
    for _, d in ipairs(resumable) do
      local starts = lines_of(d .. "/attempts.log")
      assert.are.equal(2, #starts)
      assert.matches("start (resuming)", starts[2], 1, true)
      assert.is_true(files.read_json(d .. "/result.json").resumed)
    end
    for _, c in ipairs(cells) do assert.are.same({ 3, 3 }, { c.finished, c.complete }) end
  end)

  it("adopts the workers a killed sweep left running instead of starting their trials again", function()
    local pid = start_sweep(dir, 30, 2)
    assert.is_true(wait_for(function()
      for _, d in ipairs(trial_dirs(dir, "toy/concat/*/c*-s0")) do
        if fs.exists(d .. "/checkpoint.safetensors") then return true end
      end
      return false
    end, 20), "no trial started")
    assert.matches("another sweep %(pid " .. pid .. "%) is running in",
      H.error_of(sweep.run, opts(dir, { epochs = 30 }), { host = HOST, quiet = true }))
    kill_and_wait({ pid })
    local said = {}
    local _, res = sweep.run(opts(dir, { epochs = 30 }), { workers = 2, threads = 1, host = HOST,
                                                           print = function(s) said[#said + 1] = s end })
    assert.is_true(res.adopted >= 1)
    assert.matches("adopted", table.concat(said, "\n"), 1, true)
    for _, d in ipairs(trial_dirs(dir, "toy/concat/*/c*-s0")) do
      assert.is_true(fs.exists(d .. "/result.json"), d)
      assert.are.equal(1, #lines_of(d .. "/attempts.log"), d)
    end
  end)
end)

describe("miles.sweep Slurm job arrays", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rmdir(dir) end)

  it("writes one array task per trial, MSLR's after the unimodal stage, and runs nothing", function()
    local w, plan = sweep.slurm(opts(dir, { methods = { "vanilla", "mslr_k" } }),
      { time = "01:00:00", cpus = 2, array_max = 3, host = HOST })
    assert.are.equal(6, w.trials)
    assert.are.same({ dir .. "/slurm/array_1.sbatch", dir .. "/slurm/array_2.sbatch",
                      dir .. "/slurm/array_after_1.sbatch" }, w.scripts)
    local a1, a2 = H.read_file(w.scripts[1]), H.read_file(w.scripts[2])
    assert.matches("\n#SBATCH --array=0-2\n", a1, 1, true)
    assert.matches("\n#SBATCH --array=0-0\n", a2, 1, true)
    assert.matches("\n#SBATCH --cpus-per-task=2\n#SBATCH --output=" .. dir .. "/slurm/logs/%A_%a.out\n" ..
      "#SBATCH --time=01:00:00\n", a1, 1, true)
    local listed = { a1:match("TRIALS=%(\n(.-)\n%)") .. "\n" .. a2:match("TRIALS=%(\n(.-)\n%)"),
                     H.read_file(w.scripts[3]):match("TRIALS=%(\n(.-)\n%)") }
    local expect = { {}, {} }
    for _, t in ipairs(plan.trials) do table.insert(expect[t.after and 2 or 1], "  '" .. t.dir .. "'") end
    assert.are.same({ table.concat(expect[1], "\n"), table.concat(expect[2], "\n") }, listed)
    assert.matches("toy/unimodal/search/c01-s0", expect[1][1], 1, true)
    assert.matches("\nexec 'build/bin/miles' 'experiments/run_trial.lua' \"$TRIAL\" \"${SLURM_CPUS_PER_TASK:-1}\"\n",
      a1, 1, true)
    local submit = H.read_file(w.submit)
    assert.matches("id=$(sbatch --parsable array_2.sbatch | cut -d';' -f1)", submit, 1, true)
    assert.matches("\nsbatch --dependency=afterany$ids array_after_1.sbatch\n", submit, 1, true)
    for _, t in ipairs(plan.trials) do
      assert.is_true(fs.exists(t.dir .. "/config.json"))
      assert.is_false(fs.exists(t.dir .. "/output.log"))
    end
    -- array task 2 of the first script runs the third trial (vanilla c01-s0), and only it
    assert.is_true(os.execute("cd / && SLURM_ARRAY_TASK_ID=2 SLURM_CPUS_PER_TASK=1 bash " .. w.scripts[1] ..
      " > /dev/null 2>&1"))
    for i, t in ipairs(plan.trials) do
      assert.are.equal(i == 3, fs.exists(t.dir .. "/result.json"), t.id)
    end
    assert.are.equal("toy/concat/vanilla/c01-s0", plan.trials[3].id)
    -- written again, the finished trial is left out
    assert.are.equal(5, sweep.slurm(opts(dir, { methods = { "vanilla", "mslr_k" } }), { host = HOST }).trials)
  end)
end)
