-- rules.mslr_k, mslr_s and mslr_d: driven by a fake ctx (an optimizer that records
-- its set_lr calls, crafted validation metrics), checked against rates computed by
-- hand; then one short run of each rule through train.Trainer.
local miles = require "miles"
local H = require "helpers"
local nn = miles.nn
local fusion = require "miles.fusion"
local rules = require "miles.rules"
local train = require "miles.train"
local checkpoint = require "miles.checkpoint"

-- An optimizer stand-in: set_lr records {name, value} and keeps the rates.
local function fake_optimizer(alpha, names)
  local o = { calls = {}, rates = {} }
  for _, n in ipairs(names) do o.rates[n] = alpha end
  function o:set_lr(name, v)
    self.calls[#self.calls + 1] = { name, v }
    self.rates[name] = v
  end
  function o:lr(name) return self.rates[name] end
  return o
end

local function fake_ctx(order, alpha)
  local names = { table.unpack(order) }
  names[#names + 1] = "fusion"
  return { order = order, alpha = alpha, optimizer = fake_optimizer(alpha, names), metric = "accuracy",
           metrics = {}, log = {} }
end

local function close(a, b, what)
  assert(math.abs(a - b) <= 1e-12 * math.max(1, math.abs(b)), ("%s: %.17g ~= %.17g"):format(what or "value", a, b))
end

local raises = H.raises

local AB = { "audio", "image" }

describe("rules.mslr_k", function()
  it("gives each modality its rate and the fusion group alpha, once, at setup; probe heads", function()
    local r, ctx = rules.mslr_k{ lrs = { audio = 3e-3, image = 2e-4, text = 1 } }, fake_ctx(AB, 1e-3)
    assert.are.equal("mslr_k", r.name)
    assert.are.equal("probe", r.head_mode)
    r.setup(ctx)
    assert.are.same({ { "audio", 3e-3 }, { "image", 2e-4 }, { "fusion", 1e-3 } }, ctx.optimizer.calls)
    assert.is_nil(r.on_epoch_end)
  end)

  it("errors name what is missing or wrong", function()
    raises(function() rules.mslr_k() end, "rules.mslr_k", "lrs = {modality = rate")
    raises(function() rules.mslr_k{ lrs = {} } end, "rules.mslr_k", "lrs")
    raises(function() rules.mslr_k{ lrs = { audio = -1e-3 } } end, "lrs.audio", "-0.001")
    raises(function() rules.mslr_k{ lrs = { audio = "fast" } } end, "lrs.audio", "fast")
    raises(function() rules.mslr_k{ lrs = { audio = 1 }, lamda = 0.5 } end, "unknown option", "lamda")
    local r = rules.mslr_k{ lrs = { audio = 1e-3 } }
    raises(function() r.setup(fake_ctx(AB, 1e-3)) end, "rules.mslr_k", "no rate for modality 'image'")
  end)
end)

describe("rules.mslr_s", function()
  it("lambda 0.5: each rate halfway to the geometric mean on a log scale", function()
    local r, ctx = rules.mslr_s{ lrs = { audio = 1e-2, image = 1e-4 } }, fake_ctx(AB, 5e-3)
    assert.are.equal(0.5, r.lambda)
    r.setup(ctx)
    local rates = ctx.optimizer.rates
    close(rates.audio, 10 ^ -2.5, "audio")   -- mean log10 = -3; 0.5 * -2 + 0.5 * -3
    close(rates.image, 10 ^ -3.5, "image")
    close(rates.fusion, 5e-3, "fusion")
  end)

  it("three modalities, lambda 0.3; lambda 0 gives K, lambda 1 the geometric mean", function()
    local order, lrs = { "a", "b", "c" }, { a = 1e-2, b = 1e-3, c = 1e-5 }
    local ctx = fake_ctx(order, 1e-3)
    rules.mslr_s{ lrs = lrs, lambda = 0.3 }.setup(ctx)
    -- mean log10 = -10/3: a 0.7 * -2 - 1 = -2.4, b 0.7 * -3 - 1 = -3.1, c 0.7 * -5 - 1 = -4.5
    close(ctx.optimizer.rates.a, 10 ^ -2.4, "a"); close(ctx.optimizer.rates.b, 10 ^ -3.1, "b")
    close(ctx.optimizer.rates.c, 10 ^ -4.5, "c")
    ctx = fake_ctx(order, 1e-3)
    rules.mslr_s{ lrs = lrs, lambda = 0 }.setup(ctx)
    for n, v in pairs(lrs) do close(ctx.optimizer.rates[n], v, n .. " at lambda 0") end
    ctx = fake_ctx(order, 1e-3)
    rules.mslr_s{ lrs = lrs, lambda = 1 }.setup(ctx)
    for n in pairs(lrs) do close(ctx.optimizer.rates[n], 10 ^ (-10 / 3), n .. " at lambda 1") end
  end)

  it("checks lambda in [0, 1] and the rates", function()
    raises(function() rules.mslr_s{ lrs = { audio = 1 }, lambda = 1.5 } end, "lambda", "1.5")
    raises(function() rules.mslr_s{ lrs = { audio = 1 }, lambda = -0.1 } end, "lambda", "-0.1")
    raises(function() rules.mslr_s{ lambda = 0.5 } end, "rules.mslr_s", "lrs")
  end)
end)

describe("rules.mslr_d", function()
  -- Validation accuracies of the probes over 8 epochs.
  local AUDIO = { 0.5, 0.6, 0.7, 0.8, 0.9, 0.7, 0.84, 0.5 }
  local IMAGE = { 0, 0, 0, 0, 0, 0.3, 0.2, 0.4 }
  local A0 = { audio = 1e-3, image = 1e-4 }

  local function epoch_end(r, ctx, t)
    ctx.epoch, ctx.log = t, {}
    ctx.metrics.val = { fused = { accuracy = 0.9 }, audio = { accuracy = AUDIO[t] }, image = { accuracy = IMAGE[t] } }
    r.on_epoch_end(ctx)
  end

  it("keeps a_0 for 5 epochs, then a_0 * M_t / mean of the previous 5 (not cumulative), skipping a mean of 0", function()
    local r, ctx = rules.mslr_d{ lrs = A0 }, fake_ctx(AB, 1e-2)
    r.setup(ctx)
    assert.are.equal(3, #ctx.optimizer.calls)
    for t = 1, 5 do
      epoch_end(r, ctx, t)
      assert.are.equal(3, #ctx.optimizer.calls, "no rate change at epoch " .. t)
      assert.are.equal(("r_audio=wait(%d/5) r_image=wait(%d/5)"):format(t - 1, t - 1), ctx.log.action)
    end
    epoch_end(r, ctx, 6)   -- audio: 0.7 / mean(.5 .6 .7 .8 .9) = 1; image: mean 0, skipped
    assert.are.same({ { "audio", 1e-3 } }, { table.unpack(ctx.optimizer.calls, 4) })
    assert.are.equal("r_audio=1.0000 r_image=skip(mean 0)", ctx.log.action)
    close(ctx.optimizer.rates.image, 1e-4, "image after the skip")
    epoch_end(r, ctx, 7)   -- audio 0.84 / 0.74; image 0.2 / 0.06
    close(ctx.optimizer.rates.audio, 1e-3 * 0.84 / 0.74, "audio at 7")
    close(ctx.optimizer.rates.image, 1e-4 * 0.2 / 0.06, "image at 7")
    close(ctx.log.r.audio, 0.84 / 0.74, "logged r")
    epoch_end(r, ctx, 8)   -- audio 0.5 / 0.788 (from a_0, not from the rate of epoch 7); image 0.4 / 0.1
    close(ctx.optimizer.rates.audio, 1e-3 * 0.5 / 0.788, "audio at 8")
    close(ctx.optimizer.rates.image, 1e-4 * 4, "image at 8")
    close(ctx.optimizer.rates.fusion, 1e-2, "fusion keeps alpha")
    assert.are.same({ 0.8, 0.9, 0.7, 0.84, 0.5 }, r.state.hist.audio)
  end)

  it("its state survives a checkpoint's JSON round trip (resume at epoch 6)", function()
    local r, ctx = rules.mslr_d{ lrs = A0 }, fake_ctx(AB, 1e-2)
    r.setup(ctx)
    for t = 1, 6 do epoch_end(r, ctx, t) end
    local r2, ctx2 = rules.mslr_d{ lrs = A0 }, fake_ctx(AB, 1e-2)
    r2.setup(ctx2)
    for k, v in pairs(checkpoint.json_decode(checkpoint.json_encode(r.state))) do r2.state[k] = v end
    for t = 7, 8 do epoch_end(r, ctx, t); epoch_end(r2, ctx2, t) end
    assert.are.same(ctx.optimizer.rates, ctx2.optimizer.rates)
  end)

  it("reads the chosen metric and window; checks its options", function()
    local r, ctx = rules.mslr_d{ lrs = A0, window = 2, metric = "f1_macro" }, fake_ctx(AB, 1e-2)
    r.setup(ctx)
    for t, f1 in ipairs({ 0.2, 0.4, 0.6 }) do
      ctx.epoch = t
      ctx.metrics.val = { audio = { accuracy = 0, f1_macro = f1 }, image = { accuracy = 0, f1_macro = 0.5 } }
      r.on_epoch_end(ctx)
    end
    close(ctx.optimizer.rates.audio, 1e-3 * 0.6 / 0.3, "audio")
    close(ctx.optimizer.rates.image, 1e-4, "image")
    ctx.metrics.val = { audio = { f1_macro = 0.5 }, image = { accuracy = 0.5 } }
    raises(function() r.on_epoch_end(ctx) end, "rules.mslr_d", "f1_macro", "image")
    assert.are.same({ 0.4, 0.6 }, r.state.hist.audio)   -- nothing recorded from the failed call
    raises(function() rules.mslr_d{ lrs = A0, window = 0 } end, "window", "0")
    raises(function() rules.mslr_d{ lrs = A0, windows = 3 } end, "unknown option", "windows")
  end)
end)

describe("MSLR through train.Trainer", function()
  local DS = train.toy_dataset{ n = 128, classes = 4, seed = 0 }
  local conv_model = H.conv_fusion_model
  local LRS = { audio = 1e-2, image = 1e-4 }
  local cases = {
    { "mslr_k", {}, { 1e-2, 1e-4 } },
    { "mslr_s", { lambda = 0.5 }, { 10 ^ -2.5, 10 ^ -3.5 } },
    { "mslr_d", {}, { 1e-2, 1e-4 } },
  }
  for _, case in ipairs(cases) do
    local name, extra, want = case[1], case[2], case[3]
    it(name .. ": 2 epochs with the rule's rates in every row, alpha for the fusion group", function()
      local opts = { lrs = LRS }
      for k, v in pairs(extra) do opts[k] = v end
      local t = train.Trainer{ model = conv_model(), dataset = DS, rule = name, rule_opts = opts, lr = 1e-3,
                               epochs = 2, batch_size = 32, seed = 0, workers = 1, quiet = true }
      assert.are.equal("probe", t.model.head_mode)
      t:fit()
      assert.are.equal(2, #t.history)
      for i, row in ipairs(t.history) do
        close(row.lr_audio, want[1], "row " .. i .. " lr_audio")
        close(row.lr_image, want[2], "row " .. i .. " lr_image")
        close(row.lr_fusion, 1e-3, "row " .. i .. " lr_fusion")
        if name == "mslr_d" then
          assert.are.equal(("r_audio=wait(%d/5) r_image=wait(%d/5)"):format(i - 1, i - 1), row.action)
        end
      end
    end)
  end
end)
