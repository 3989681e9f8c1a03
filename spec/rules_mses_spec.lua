-- rules.mses (modality-specific early stopping) through train.Trainer on
-- train.toy_dataset with batch-norm encoders. The validation metrics the rule
-- sees are crafted per epoch (a wrapper replaces ctx.metrics.val before the
-- rule's on_epoch_end), so which branch freezes when is known in advance, while
-- the weights come from real training; the wrapper also records every group's
-- weights before and after the rule acts.
local miles = require "miles"
local H = require "helpers"
local nn = miles.nn
local fusion = require "miles.fusion"
local train = require "miles.train"
local rules = require "miles.rules"
local checkpoint = require "miles.checkpoint"

local DS = train.toy_dataset{ n = 128, classes = 4, seed = 0 }
local GROUPS = { "audio", "image", "fusion" }

local function model()
  miles.manual_seed(0)
  local function enc() return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU()) end
  return fusion.Model{ encoders = { audio = enc(), image = enc() }, order = { "audio", "image" }, classes = 4 }
end

local copy_sd, same_values = H.copy_state, H.same_state

-- An MSES rule that sees metrics[e] = {fused, audio, image} at epoch e and
-- records the groups' weights: rec.pre[e][group], rec.post[e][group].
local function crafted(opts, metrics)
  local rule = rules.mses(opts)
  local inner = rule.on_epoch_end
  local rec = { pre = {}, post = {} }
  rule.on_epoch_end = function(ctx)
    local m = metrics[ctx.epoch]
    ctx.metrics.val = { fused = { accuracy = m[1] }, audio = { accuracy = m[2] }, image = { accuracy = m[3] },
                        loss = ctx.metrics.val.loss }
    local pre, post = {}, {}
    for _, g in ipairs(GROUPS) do pre[g] = copy_sd(ctx.trainer:group_state(g)) end
    inner(ctx)
    for _, g in ipairs(GROUPS) do post[g] = copy_sd(ctx.trainer:group_state(g)) end
    rec.pre[ctx.epoch], rec.post[ctx.epoch] = pre, post
  end
  return rule, rec
end

local function args(rule, extra)
  local a = { model = model(), dataset = DS, rule = rule, lr = 1e-2, epochs = 10, batch_size = 32, seed = 0,
              workers = 1, quiet = true }
  for k, v in pairs(extra or {}) do a[k] = v end
  return a
end

-- patience 2: audio peaks at epoch 2 and freezes at 4, image peaks at 3 and
-- freezes at 5, fusion peaks at 4 and freezes at 6, when the run stops.
local METRICS = {
  { 0.50, 0.50, 0.30 },
  { 0.60, 0.70, 0.40 },
  { 0.70, 0.60, 0.50 },
  { 0.80, 0.60, 0.45 },
  { 0.75, 0.90, 0.45 },
  { 0.70, 0.90, 0.90 },
}

describe("rules.mses", function()
  it("validates its options", function()
    assert.truthy(H.error_of(rules.mses, { patience = 0 }):find("patience must be an integer >= 1, got 0", 1, true))
    assert.truthy(H.error_of(rules.mses, { source = "test" }):find("source must be 'val' or 'train', got test", 1, true))
    local r = rules.mses()
    assert.are.equal(5, r.patience)
    assert.are.equal("loss", r.head_mode)
    assert.are.same({ fused = 1, audio = 1, image = 1 }, r.loss_weights({ order = { "audio", "image" } }))
  end)

  it("freezes each branch at its best weights when patience runs out, and stops when all are frozen", function()
    local rule, rec = crafted({ patience = 2 }, METRICS)
    local t = train.Trainer(args(rule))
    local p_audio = t.optimizer:group("audio").params[1]
    local s = t:fit()
    assert.are.equal(6, #t.history)
    assert.is_true(t.ctx.stop)
    local actions = {}
    for e, r in ipairs(t.history) do actions[e] = r.action or "-" end
    assert.are.same({ "-", "-", "-", "freeze audio", "freeze image", "freeze fusion" }, actions)
    assert.are.same({ best = 0.7, best_epoch = 2, wait = 2, frozen = true }, rule.state.branches.audio)
    assert.are.same({ best = 0.5, best_epoch = 3, wait = 2, frozen = true }, rule.state.branches.image)
    assert.are.same({ best = 0.8, best_epoch = 4, wait = 2, frozen = true }, rule.state.branches.fusion)
    -- restored to the best epoch's weights (which training had moved away from)
    for g, e in pairs({ audio = { 2, 4 }, image = { 3, 5 }, fusion = { 4, 6 } }) do
      local best, froze = e[1], e[2]
      assert.is_false(same_values(rec.post[best][g], rec.pre[froze][g]), g .. " did not move")
      assert.is_true(same_values(rec.post[best][g], rec.post[froze][g]), g .. " not restored")
      for later = froze + 1, 6 do   -- training leaves it alone: weights and batch-norm statistics
        assert.is_true(same_values(rec.post[froze][g], rec.pre[later][g]), g .. " moved while frozen")
      end
    end
    assert.are.same({ 1e-2, 1e-2, 1e-2, 1e-2, 0, 0 }, (function()
      local l = {}
      for e, r in ipairs(t.history) do l[e] = r.lr_audio end
      return l
    end)())
    assert.are.equal(0, t.history[6].lr_image)
    assert.are.equal(1e-2, t.history[6].lr_fusion)
    assert.is_false(p_audio.requires_grad)
    -- the final model: every branch's best weights
    assert.are.equal("finalize", s.weights)
    assert.is_true(same_values(rec.post[2].audio, t:group_state("audio")))
    assert.is_true(same_values(rec.post[3].image, t:group_state("image")))
    assert.is_true(same_values(rec.post[4].fusion, t:group_state("fusion")))
    assert.are.equal(t:evaluate("val").fused.accuracy, s.val.fused)
  end)

  it("at the epoch limit, the final model joins each unfrozen branch's best epoch", function()
    local rule, rec = crafted({ patience = 5 }, { { 0.6, 0.9, 0.3 }, { 0.8, 0.5, 0.4 }, { 0.7, 0.6, 0.5 } })
    local t = train.Trainer(args(rule, { epochs = 3 }))
    t:fit()
    assert.is_nil(t.ctx.stop)
    assert.is_nil(next(t.frozen))
    assert.is_true(same_values(rec.post[1].audio, t:group_state("audio")))
    assert.is_true(same_values(rec.post[3].image, t:group_state("image")))
    assert.is_true(same_values(rec.post[2].fusion, t:group_state("fusion")))
    assert.is_false(same_values(rec.post[3].audio, t:group_state("audio")))
  end)

  it("resumes with its snapshots and frozen branches to the same run", function()
    local full = train.Trainer(args((crafted({ patience = 2 }, METRICS))))
    local sf = full:fit()
    local dir = H.tmpdir()
    local path = dir .. "/last.safetensors"
    local part = train.Trainer(args((crafted({ patience = 2 }, METRICS)), { checkpoint = path }))
    for _ = 1, 5 do part:epoch() end   -- audio and image frozen, fusion still training
    local r = train.resume(path, args((crafted({ patience = 2 }, METRICS))))
    assert.are.same({ "audio", "fusion", "image" }, (function()
      local k = {}
      for name in pairs(r.snapshots) do k[#k + 1] = name end
      table.sort(k)
      return k
    end)())
    assert.is_false(r.optimizer:group("image").params[1].requires_grad)
    local sr = r:fit()
    local strip = H.rows_json
    assert.are.equal(strip(full.history), strip(r.history))
    assert.are.equal(checkpoint.json_encode(sf), checkpoint.json_encode(sr))
    assert.is_true(same_values(full.model:state_dict(), r.model:state_dict()))
    H.rmdir(dir)
  end)
end)
