-- rules.gblend (gradient blending): the weights from given loss curves against
-- values computed by hand, the offline and online schedules, and short runs
-- through train.Trainer on train.toy_dataset (estimates from probe runs of
-- copies, the loss the trainer back-propagates, the training indices).
local miles = require "miles"
local H = require "helpers"
local nn = miles.nn
local fusion = require "miles.fusion"
local train = require "miles.train"
local rules = require "miles.rules"

local HEADS = { "fused", "audio", "image" }

local function close(a, b, what)
  assert(math.abs(a - b) <= 1e-9 * math.max(1, math.abs(b)), ("%s: %.17g ~= %.17g"):format(what, a, b))
end

-- A curve from L^T_N, L^T_{N+n}, L^V_N, L^V_{N+n}.
local function curve(t0, t1, v0, v1) return { train = { t0, t1 }, held_out = { v0, v1 } } end

describe("rules.gblend weights", function()
  local r = rules.gblend()

  it("w_i = (dG_i / dO_i^2) / Z", function()
    -- fused: O 0.1 -> 0.3, dO 0.2, dG 0.3 -> 7.5; audio: O 0.1 -> 0.5, dO 0.4, dG 0.4 -> 2.5;
    -- image: O 0.1 -> 0.2, dO 0.1, dG 0.2 -> 20; Z = 30
    local w, stats = r.blend_weights(HEADS, { fused = curve(1.0, 0.5, 1.1, 0.8), audio = curve(1.2, 0.4, 1.3, 0.9),
                                              image = curve(1.3, 1.0, 1.4, 1.2) })
    close(w.fused, 7.5 / 30, "fused")
    close(w.audio, 2.5 / 30, "audio")
    close(w.image, 20 / 30, "image")
    close(stats.audio.dO, 0.4, "dO")
    close(stats.audio.dG, 0.4, "dG")
  end)

  it("takes absolute values of dG and dO and floors |dO| at 1e-4", function()
    -- fused: dO = -0.1 (O 0.1 -> 0), dG 0.4 -> 40; audio: dG = -0.2 (V rises), dO 0.2 -> 5;
    -- image: dO = 0 -> floor, dG 0.5 -> 0.5 / 1e-8
    local w, stats = r.blend_weights(HEADS, { fused = curve(1.3, 1.0, 1.4, 1.0), audio = curve(1.0, 1.0, 1.0, 1.2),
                                              image = curve(1.0, 0.5, 1.5, 1.0) })
    close(stats.fused.dO, -0.1, "fused dO")
    close(stats.audio.dG, -0.2, "audio dG")
    local z = 40 + 5 + 0.5 / 1e-8
    close(w.fused, 40 / z, "fused")
    close(w.audio, 5 / z, "audio")
    close(w.image, (0.5 / 1e-8) / z, "image")
    local w2 = rules.gblend{ floor = 0.1 }.blend_weights(HEADS, { fused = curve(1.3, 1.0, 1.4, 1.0),
      audio = curve(1.0, 1.0, 1.0, 1.2), image = curve(1.0, 0.5, 1.5, 1.0) })
    close(w2.image, (0.5 / 0.01) / (40 + 5 + 50), "image, floor 0.1")
  end)

  it("gives equal weights when no head generalizes (Z = 0)", function()
    local w = r.blend_weights(HEADS, { fused = curve(1, 0.5, 1, 1), audio = curve(1, 0.7, 2, 2), image = curve(1, 1, 1, 1) })
    for _, h in ipairs(HEADS) do close(w[h], 1 / 3, h) end
    assert.truthy(H.error_of(r.blend_weights, HEADS, { fused = curve(1, 1, 1, 1) }):find("no loss curve for head 'audio'", 1, true))
  end)
end)

describe("rules.gblend schedule and options", function()
  local function due_epochs(rule, upto)
    local list = {}
    for e = 1, upto do if rule.due(e) then list[#list + 1] = e end end
    return list
  end

  it("offline estimates once, at the start of epoch 1", function()
    assert.are.same({ 1 }, due_epochs(rules.gblend(), 40))
  end)

  it("online re-estimates after every super-epoch: 10 epochs, then every 5", function()
    assert.are.same({ 1, 11, 16, 21, 26, 31, 36 }, due_epochs(rules.gblend{ variant = "online" }, 40))
    assert.are.same({ 1, 5, 7, 9 }, due_epochs(rules.gblend{ variant = "online", first = 4, every = 2 }, 10))
  end)

  it("validates its options", function()
    local r = rules.gblend()
    assert.are.same({ "offline", 5, 0.1, 10, 5, 1e-4, "loss" },
      { r.variant, r.probe_epochs, r.held_out, r.first, r.every, r.floor, r.head_mode })
    for _, case in ipairs({ { { variant = "both" }, "variant must be 'offline' or 'online', got both" },
                            { { probe_epochs = 0 }, "probe_epochs must be an integer >= 1, got 0" },
                            { { every = 2.5 }, "every must be an integer >= 1, got 2.5" },
                            { { held_out = 1 }, "held_out must be in (0, 1), got 1" },
                            { { floor = 0 }, "floor must be > 0, got 0" } }) do
      assert.truthy(H.error_of(rules.gblend, case[1]):find(case[2], 1, true), case[2])
    end
  end)
end)

describe("rules.gblend through train.Trainer", function()
  local DS = train.toy_dataset{ n = 128, classes = 4, seed = 0 }

  local function args(opts)
    miles.manual_seed(0)
    local function enc() return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU()) end
    local m = fusion.Model{ encoders = { audio = enc(), image = enc() }, order = { "audio", "image" }, classes = 4 }
    return { model = m, dataset = DS, rule = rules.gblend(opts), lr = 1e-2, epochs = 2, batch_size = 16, seed = 0,
             workers = 1, quiet = true }
  end

  it("offline: weights from probe runs of copies at the start, used in the loss of every step", function()
    local t = train.Trainer(args{ probe_epochs = 2 })
    assert.is_nil(t.train_indices)
    local steps = 0
    t.rule.on_step = function(ctx)
      local want = 0
      for _, h in ipairs(HEADS) do want = want + ctx.state.weights[h] * ctx.losses[h]:item() end
      assert(math.abs(ctx.loss:item() - want) < 1e-5, "the loss is not the blend")
      steps = steps + 1
    end
    t:fit()
    assert.are.equal(2 * 4, steps)   -- 64 training samples, batches of 16
    local w = t.rule.state.weights
    close(w.fused + w.audio + w.image, 1, "sum")
    assert.truthy(t.history[1].action:find("^blend fused=%d%.%d+ audio=%d%.%d+ image=%d%.%d+$"))
    assert.is_nil(t.history[2].action)
    -- the same estimate from the trainer's public pieces, by hand
    local u = train.Trainer(args{ probe_epochs = 2 })
    local kept, held = u:holdout(0.1)
    local curves = {}
    for _, h in ipairs(HEADS) do
      local lw = { fused = 0, audio = 0, image = 0 }
      lw[h] = 1
      local p = u:probe_run{ epochs = 2, loss_weights = lw, train = kept, held_out = held }
      curves[h] = curve(p.start.train[h], p.epochs[2].train[h], p.start.held_out[h], p.epochs[2].held_out[h])
    end
    assert.are.same(u.rule.blend_weights(HEADS, curves), w)
  end)

  it("online: trains on the kept part only and re-estimates on schedule", function()
    local t = train.Trainer(args{ variant = "online", probe_epochs = 1, first = 1, every = 1, held_out = 0.25 })
    local kept = t:holdout(0.25)
    assert.are.same(kept:totable(), t.train_indices:totable())
    local steps = 0
    t.rule.on_step = function() steps = steps + 1 end
    t:fit()
    assert.are.equal(2 * 3, steps)   -- 48 kept samples, batches of 16
    for e = 1, 2 do assert.truthy(t.history[e].action:find("^blend "), "no estimate at epoch " .. e) end
  end)
end)
