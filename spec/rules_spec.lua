-- miles.rules: the vanilla and MILES rules as hook tables, driven by a fake ctx
-- (crafted metrics, a real optimizer with the three groups of a fusion model).
local miles = require "miles"
local H = require "helpers"
local rules = require "miles.rules"

local ORDER = { "audio", "image" }

-- A fake ctx: an Adam over three named groups (one parameter each) at alpha.
local function fake_ctx(alpha)
  local groups = {}
  for _, n in ipairs({ "audio", "image", "fusion" }) do
    groups[#groups + 1] = { name = n, params = { miles.zeros(2, { requires_grad = true }) } }
  end
  local opt = miles.optim.Adam(groups, { lr = alpha })
  return { order = ORDER, alpha = alpha, optimizer = opt, metric = "accuracy", metrics = {}, log = {} }
end

-- ctx.metrics[split] from fused, audio, image accuracies.
local function set_metrics(ctx, split, fused, a, b)
  ctx.metrics[split] = { fused = { accuracy = fused, f1_macro = fused / 2 },
                         audio = { accuracy = a, f1_macro = a / 2 },
                         image = { accuracy = b, f1_macro = b / 2 } }
end

local function lrs(ctx)
  return { ctx.optimizer:lr("audio"), ctx.optimizer:lr("image"), ctx.optimizer:lr("fusion") }
end

local function close(a, b, what)
  assert(math.abs(a - b) <= 1e-12, string.format("%s: %.17g ~= %.17g", what or "value", a, b))
end

local function raises(fn, ...)
  local msg = H.error_of(fn)
  for _, piece in ipairs({ ... }) do
    assert(msg:find(piece, 1, true), string.format("error %q lacks %q", msg, piece))
  end
end

describe("rules.vanilla", function()
  it("defaults to probe heads, weights 1 for the fused output and every head", function()
    local r = rules.vanilla()
    assert.are.equal("probe", r.head_mode)
    local w = r.loss_weights({ order = ORDER })
    assert.are.same({ fused = 1, audio = 1, image = 1 }, w)
    assert.is_nil(r.on_epoch_end)
  end)
  it("heads = 'loss' gives Eq. 3", function()
    local r = rules.vanilla{ heads = "loss" }
    assert.are.equal("loss", r.head_mode)
    assert.are.same({ fused = 1, audio = 1, image = 1 }, r.loss_weights({ order = ORDER }))
  end)
  it("rejects an unknown head mode", function()
    raises(function() rules.vanilla{ heads = "both" } end, "heads", "both")
  end)
end)

describe("rules.miles", function()
  it("uses loss-mode heads with unit weights", function()
    local r = rules.miles()
    assert.are.equal("loss", r.head_mode)
    assert.are.same({ fused = 1, audio = 1, image = 1 }, r.loss_weights({ order = ORDER }))
  end)

  it("slows the dominant modality to mu * alpha, leaves the fusion group at alpha", function()
    local r, ctx = rules.miles{ tau = 0.2, mu = 0.5 }, fake_ctx(0.01)
    set_metrics(ctx, "val", 0.8, 0.9, 0.6)   -- u_audio = 0.25, u_image = -0.125
    r.on_epoch_end(ctx)
    local l = lrs(ctx)
    close(l[1], 0.005, "audio lr"); close(l[2], 0.01, "image lr"); close(l[3], 0.01, "fusion lr")
    assert.are.equal("slow_1", ctx.log.action)
    close(ctx.log.u.audio, 0.25, "u_audio"); close(ctx.log.u.image, -0.125, "u_image")
    close(ctx.log.delta, 0.375, "delta")
    assert.are.same({ 0.5, 1 }, r.state.prev)
  end)

  it("keeps the other modality's earlier scale (reset_other = false) and resets it when asked", function()
    local r, ctx = rules.miles{ tau = 0.2, mu = 0.5 }, fake_ctx(0.01)
    set_metrics(ctx, "val", 0.8, 0.9, 0.6)
    r.on_epoch_end(ctx)
    set_metrics(ctx, "val", 0.8, 0.6, 0.9)   -- now image dominates
    r.on_epoch_end(ctx)
    local l = lrs(ctx)
    close(l[1], 0.005, "audio lr kept"); close(l[2], 0.005, "image lr"); close(l[3], 0.01, "fusion lr")
    assert.are.same({ 0.5, 0.5 }, r.state.prev)

    local r2, ctx2 = rules.miles{ tau = 0.2, mu = 0.5, reset_other = true }, fake_ctx(0.01)
    set_metrics(ctx2, "val", 0.8, 0.9, 0.6)
    r2.on_epoch_end(ctx2)
    set_metrics(ctx2, "val", 0.8, 0.6, 0.9)
    r2.on_epoch_end(ctx2)
    l = lrs(ctx2)
    close(l[1], 0.01, "audio lr reset"); close(l[2], 0.005, "image lr"); close(l[3], 0.01, "fusion lr")
  end)

  it("takes prev from its state table (as restored from a checkpoint)", function()
    local r, ctx = rules.miles{ tau = 0.2, mu = 0.5 }, fake_ctx(0.02)
    r.state.prev = { 0.5, 1 }
    set_metrics(ctx, "val", 0.8, 0.6, 0.9)
    r.on_epoch_end(ctx)
    local l = lrs(ctx)
    close(l[1], 0.01, "audio lr from prev"); close(l[2], 0.01, "image lr"); close(l[3], 0.02, "fusion lr")
  end)

  it("sets both rates to alpha when balanced or when both u < 0", function()
    local r, ctx = rules.miles{ tau = 0.2, mu = 0.5 }, fake_ctx(0.01)
    r.state.prev = { 0.5, 0.5 }
    set_metrics(ctx, "val", 0.8, 0.6, 0.6)
    r.on_epoch_end(ctx)
    assert.are.same({ 0.01, 0.01, 0.01 }, lrs(ctx))
    ctx.optimizer:set_lr("audio", 0.005)
    set_metrics(ctx, "val", 0.5, 0.8, 0.9)
    r.on_epoch_end(ctx)
    assert.are.same({ 0.01, 0.01, 0.01 }, lrs(ctx))
  end)

  it("reads the chosen source and metric", function()
    local r, ctx = rules.miles{ tau = 0.2, mu = 0.25, source = "train", metric = "f1_macro" }, fake_ctx(0.01)
    set_metrics(ctx, "val", 0.8, 0.6, 0.6)      -- balanced: would do nothing
    set_metrics(ctx, "train", 0.8, 0.6, 0.9)    -- image dominates (f1 = acc / 2, same u)
    r.on_epoch_end(ctx)
    local l = lrs(ctx)
    close(l[1], 0.01, "audio lr"); close(l[2], 0.0025, "image lr"); close(l[3], 0.01, "fusion lr")
  end)

  it("validates tau, mu and source, naming the value", function()
    raises(function() rules.miles{ tau = 1.5 } end, "tau", "1.5")
    raises(function() rules.miles{ mu = 0 } end, "mu", "0")
    raises(function() rules.miles{ mu = 2 } end, "mu", "2")
    raises(function() rules.miles{ source = "test" } end, "source", "test")
  end)
end)

describe("rules.get", function()
  it("returns built-ins by name, tables as they are, and rules from Lua files", function()
    assert.are.equal("miles", rules.get("miles", { tau = 0.1 }).name)
    assert.are.equal(0.1, rules.get("miles", { tau = 0.1 }).tau)
    assert.are.equal("vanilla", rules.get("vanilla").name)
    local t = { name = "mine" }
    assert.are.equal(t, rules.get(t))
    local base = os.tmpname()
    os.remove(base)
    local path = base .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write("return function(opts) return { name = 'file', k = opts.k } end\n")
    f:close()
    local r = rules.get(path, { k = 7 })
    os.remove(path)
    assert.are.equal("file", r.name)
    assert.are.equal(7, r.k)
    raises(function() rules.get("nope") end, "unknown rule", "nope")
  end)
end)
