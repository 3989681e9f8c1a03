-- Resuming a killed run: a child process (build/bin/miles) trains MILES on
-- train.toy_dataset with a checkpoint every epoch and kills itself with SIGKILL
-- at a chosen point (a rule hook runs `kill -9 $PPID`); train.resume continues
-- from the last checkpoint, and the history, the summary and the log files must
-- equal those of an uninterrupted run (all but the seconds). The settings (noisy
-- audio, tau = 0, mu = 0.5) make MILES slow the audio encoder at epoch 1 and the
-- image encoder from epoch 2 on, so the audio rate stays mu * alpha only through
-- rule.state.prev: a resume that loses that state gives different numbers.
local H = require "helpers"
local train = require "miles.train"
local checkpoint = require "miles.checkpoint"

-- The trainer's arguments, shared by the child script and this spec. make(dir,
-- kill): dir (optional) gets the checkpoint and the log; kill = {epoch =, hook =
-- "on_step" | "on_epoch_end", step = k} makes the run kill itself in that hook's
-- k-th call of that epoch.
local ARGS_SOURCE = [[
local miles = require "miles"
local nn = miles.nn
local fusion = require "miles.fusion"
local train = require "miles.train"
local rules = require "miles.rules"
local DS = train.toy_dataset{ n = 256, classes = 4, seed = 0, noise_a = 1.3, signal_b = 1.0 }
return function(dir, kill)
  miles.manual_seed(0)
  local function enc() return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU()) end
  local model = fusion.Model{ encoders = { audio = enc(), image = enc() }, order = { "audio", "image" },
                              classes = 4 }
  local rule = rules.miles{ tau = 0, mu = 0.5 }
  if kill then
    local inner, calls = rule[kill.hook], 0
    rule[kill.hook] = function(ctx)
      if inner then inner(ctx) end
      if ctx.epoch == kill.epoch then
        calls = calls + 1
        if calls == kill.step then os.execute("kill -9 $PPID") end
      end
    end
  end
  return { model = model, dataset = DS, rule = rule, lr = 1e-2, epochs = 5, batch_size = 32, seed = 0,
           workers = 2, quiet = true, checkpoint = dir and dir .. "/last.safetensors",
           log_dir = dir and dir .. "/log" }
end
]]

local CHILD = "local make = (function()\n" .. ARGS_SOURCE .. "\nend)()\n" .. [[
local train = require "miles.train"
train.Trainer(make(arg[1], { epoch = tonumber(arg[2]), hook = arg[3], step = tonumber(arg[4]) })):fit()
]]

local make = assert(load(ARGS_SOURCE, "=args"))()

-- Rows without the wall-clock column, as JSON (NaN written as NaN): equal text
-- means equal numbers.
local rows_json = H.rows_json

-- The rows of a log.jsonl file.
local function log_rows(dir)
  local rows = {}
  for line in H.read_file(dir .. "/log/log.jsonl"):gmatch("[^\n]+") do
    rows[#rows + 1] = checkpoint.json_decode(line)
  end
  return rows
end

describe("a killed training run", function()
  local ref_dir, ref, ref_summary

  setup(function()
    ref_dir = H.tmpdir()
    ref = train.Trainer(make(ref_dir))
    ref_summary = ref:fit()
  end)

  teardown(function() H.rmdir(ref_dir) end)

  it("needs rule.state.prev: MILES keeps the audio rate at mu * alpha from epoch 2 on", function()
    local h = ref.history
    assert.are.equal("slow_1", h[1].action)
    for e = 2, 5 do
      assert.are.equal("slow_2", h[e].action)
      assert.are.equal(0.5e-2, h[e].lr_audio)
    end
    assert.are.equal(0.5e-2, h[3].lr_image)
  end)

  for _, case in ipairs({
    { epoch = 3, hook = "on_step", step = 2, saved = 2 },       -- mid-epoch, after checkpoint 2
    { epoch = 2, hook = "on_epoch_end", step = 1, saved = 1 },  -- after validation, before checkpoint 2
  }) do
    it(("resumes after SIGKILL in %s of epoch %d to the same numbers and log"):format(case.hook, case.epoch), function()
      local dir = H.tmpdir()
      H.write_file(dir .. "/run.lua", CHILD)
      local ok, how, code = os.execute(("build/bin/miles '%s/run.lua' '%s' %d %s %d > '%s/child.txt' 2>&1")
        :format(dir, dir, case.epoch, case.hook, case.step, dir))
      assert(not ok and ((how == "signal" and code == 9) or (how == "exit" and code == 137)),
        "the child was not killed: " .. tostring(how) .. " " .. tostring(code) .. "\n" ..
        H.read_file(dir .. "/child.txt"))
      assert.are.equal(case.saved, #log_rows(dir))
      local path = dir .. "/last.safetensors"
      local lost = train.resume(path, make(nil)) -- (before r overwrites the checkpoint)
      local r = train.resume(path, make(dir))
      assert.are.equal(case.saved, r.epoch_done)
      local s = r:fit()
      assert.are.equal(rows_json(ref.history), rows_json(r.history))
      assert.are.equal(checkpoint.json_encode(ref_summary), checkpoint.json_encode(s))
      assert.are.equal(rows_json(log_rows(ref_dir)), rows_json(log_rows(dir)))
      assert.are.equal(H.read_file(ref_dir .. "/log/summary.json"), H.read_file(dir .. "/log/summary.json"))

      -- the same checkpoint without the rule's state gives other numbers
      lost.rule.state.prev = nil
      lost:fit()
      assert.are_not.equal(rows_json(ref.history), rows_json(lost.history))
      assert.are.equal(1e-2, lost.history[case.saved + 2].lr_audio)
      H.rmdir(dir)
    end)
  end
end)
