-- rules.ogm, rules.ogm_ge and FusionModel:modality_logits: driven by hand-made ctx
-- tables (a fusion model with real conv encoders whose .grad is set by hand, a
-- fusion head with weights set by hand, crafted latents and labels), checked
-- against scores computed here in plain Lua; then one short run of each rule
-- through train.Trainer on train.toy_dataset with a tiny conv encoder.
local miles = require "miles"
local H = require "helpers"
local nn = miles.nn
local fusion = require "miles.fusion"
local rules = require "miles.rules"
local train = require "miles.train"

-- The fusion head's weight (3 classes x [2 audio | 2 image] columns) and bias.
local W = { { 0.5, -1.0, 0.3, 0.8 }, { -0.2, 0.7, 1.1, -0.4 }, { 0.9, 0.1, -0.6, 0.2 } }
local B = { 0.1, -0.3, 0.4 }
local Y = { 1, 3 }

-- An encoder with a conv weight (4-D), conv bias, batch norm and a Linear to d.
local function conv_enc(cin, cout, d)
  return nn.Sequential(nn.Conv2d(cin, cout, 3), nn.BatchNorm2d(cout), nn.ReLU(), nn.Flatten(),
                       nn.Linear(cout, d))
end

-- A two-modality model (latent 2 each, 3 classes), fusion weights set to W, B.
local function model(fusion_kind, cin, cout)
  miles.manual_seed(0)
  local m = fusion.Model{ encoders = { audio = conv_enc(cin or 1, cout or 2, 2), image = conv_enc(cin or 1, cout or 2, 2) },
                          order = { "audio", "image" }, classes = 3, fusion = fusion_kind or "concat" }
  miles.no_grad(function()
    if m.fusion_kind == "concat" then
      m.fusion_head.weight:copy_(miles.tensor(W))
    else
      local w2 = {}
      for c = 1, 3 do w2[c] = { W[c][1], W[c][2] } end
      m.fusion_head.weight:copy_(miles.tensor(w2))
    end
    m.fusion_head.bias:copy_(miles.tensor(B))
  end)
  return m
end

-- Give every parameter a known gradient (seeded normal values); returns clones.
local function set_grads(m, seed)
  miles.manual_seed(seed or 1)
  local before = {}
  for _, np in ipairs(m:named_parameters()) do
    np[2].grad = miles.randn(np[2]:shape())
    before[np[1]] = np[2].grad:clone()
  end
  return before
end

-- Plain-Lua logits of one modality: z (rows) times the columns col..col+#z[1]-1 of
-- w, plus bias / n.
local function manual_logits(w, b, n, z, col)
  local out = {}
  for i, row in ipairs(z) do
    out[i] = {}
    for c = 1, #w do
      local v = b[c] / n
      for j, x in ipairs(row) do v = v + x * w[c][col + j - 1] end
      out[i][c] = v
    end
  end
  return out
end

-- Plain-Lua s = sum_i softmax(logits_i)[y_i].
local function manual_score(logits, y)
  local s = 0
  for i, row in ipairs(logits) do
    local z = 0
    for _, v in ipairs(row) do z = z + math.exp(v) end
    s = s + math.exp(row[y[i]]) / z
  end
  return s
end

local function ctx_for(m, za, zb, epoch)
  return { model = m, order = m.order, epoch = epoch or 1, log = {},
           batch = { y = miles.tensor(Y, { dtype = "int64" }) },
           out = { latents = { audio = miles.tensor(za), image = miles.tensor(zb) } } }
end

-- The parameter names whose gradient differs from `before`, sorted.
local function changed(m, before)
  local out = {}
  for _, np in ipairs(m:named_parameters()) do
    if H.max_abs_diff(np[2].grad, before[np[1]]) > 0 then out[#out + 1] = np[1] end
  end
  table.sort(out)
  return out
end

local function close(a, b, tol, what)
  assert(math.abs(a - b) <= (tol or 1e-6), ("%s: %.10g ~= %.10g"):format(what or "value", a, b))
end

local raises = H.raises

-- on_step's k (float64 scalar tensors, on the model's device) as numbers.
local function values(k)
  if k == nil then return nil end
  local out = {}
  for i, t in ipairs(k) do
    assert.are.equal("float64", t:dtype())
    assert.are.equal(0, t:dim())
    out[i] = t:item()
  end
  return out
end

-- Audio weak, image confident on the labels (s_image > s_audio), and the reverse.
local ZA_WEAK, ZB_STRONG = { { 0.2, -0.1 }, { -0.3, 0.1 } }, { { 0.0, 3.0 }, { -2.0, 0.5 } }
local ZA_STRONG, ZB_WEAK = { { 2.0, -2.0 }, { 1.5, 1.0 } }, { { 0.1, 0.2 }, { 0.1, -0.1 } }

describe("FusionModel:modality_logits", function()
  it("concat: z_i W_i^T + b/2 with W_i the column block of z_i; the shares add up to the fused logits", function()
    local m = model("concat")
    local za, zb = { { 1.0, 2.0 }, { -0.5, 0.3 } }, { { 0.2, -1.0 }, { 1.5, 0.7 } }
    local got = m:modality_logits({ audio = miles.tensor(za), image = miles.tensor(zb) })
    H.assert_close(got.audio, manual_logits(W, B, 2, za, 1), 1e-6, 1e-6, "audio share")
    H.assert_close(got.image, manual_logits(W, B, 2, zb, 3), 1e-6, 1e-6, "image share")
    local fused = m.fusion_head(miles.cat({ miles.tensor(za), miles.tensor(zb) }, 2))
    H.assert_close(got.audio + got.image, fused, 1e-6, 1e-6, "sum of shares")
  end)

  it("sum: z_i W^T + b/2 with the one shared Linear", function()
    local m = model("sum")
    local za, zb = { { 1.0, 2.0 }, { -0.5, 0.3 } }, { { 0.2, -1.0 }, { 1.5, 0.7 } }
    local got = m:modality_logits({ audio = miles.tensor(za), image = miles.tensor(zb) })
    H.assert_close(got.audio, manual_logits(W, B, 2, za, 1), 1e-6, 1e-6, "audio share")
    H.assert_close(got.image, manual_logits(W, B, 2, zb, 1), 1e-6, 1e-6, "image share")
  end)

  it("refuses module and function fusion heads, naming the kind", function()
    local head = nn.Linear(4, 3)
    local m = fusion.Model{ encoders = { audio = conv_enc(1, 2, 2), image = conv_enc(1, 2, 2) }, classes = 3,
                            fusion = function(list) return head(miles.cat(list, 2)) end }
    local z = { audio = miles.zeros(1, 2), image = miles.zeros(1, 2) }
    raises(function() m:modality_logits(z) end, "modality_logits", "'concat' or 'sum'", "function")
  end)
end)

describe("rules.ogm", function()
  it("defaults: probe heads, cvpr, alpha 0.8, official epochs 0..50", function()
    local r = rules.ogm()
    assert.are.equal("probe", r.head_mode)
    assert.are.same({ "cvpr", 0.8, 0, 50, false }, { r.variant, r.alpha, r.modulation_start, r.modulation_end, r.noise })
    assert.are.equal("loss", rules.ogm{ heads = "loss" }.head_mode)
  end)

  it("rho_b > 1: scales only the image encoder's conv weight grads by 1 - tanh(alpha * rho_b)", function()
    local s_a = manual_score(manual_logits(W, B, 2, ZA_WEAK, 1), Y)
    local s_b = manual_score(manual_logits(W, B, 2, ZB_STRONG, 3), Y)
    assert(s_b > s_a, "fixture: the image scores must be higher")
    local m = model()
    local before = set_grads(m)
    local r = rules.ogm{ alpha = 0.5 }
    local ctx = ctx_for(m, ZA_WEAK, ZB_STRONG)
    r.setup(ctx)
    local k = values(r.on_step(ctx))
    local k_b = 1 - math.tanh(0.5 * s_b / s_a)
    close(k[1], 1, 0, "k_audio"); close(k[2], k_b, 1e-6, "k_image")
    assert.are.same({ "encoders.image.0.weight" }, changed(m, before))
    H.assert_close(m.encoders.image[1].weight.grad, before["encoders.image.0.weight"] * k_b, 1e-6, 1e-7, "scaled grad")
  end)

  it("rho_b <= 1: scales only the audio encoder's conv weight grads by 1 - tanh(alpha * rho_a)", function()
    local s_a = manual_score(manual_logits(W, B, 2, ZA_STRONG, 1), Y)
    local s_b = manual_score(manual_logits(W, B, 2, ZB_WEAK, 3), Y)
    assert(s_a > s_b, "fixture: the audio scores must be higher")
    local m = model()
    local before = set_grads(m)
    local r = rules.ogm{ alpha = 0.8 }
    local k = values(r.on_step(ctx_for(m, ZA_STRONG, ZB_WEAK)))
    local k_a = 1 - math.tanh(0.8 * s_a / s_b)
    close(k[1], k_a, 1e-6, "k_audio"); close(k[2], 1, 0, "k_image")
    assert.are.same({ "encoders.audio.0.weight" }, changed(m, before))
    H.assert_close(m.encoders.audio[1].weight.grad, before["encoders.audio.0.weight"] * k_a, 1e-6, 1e-7, "scaled grad")
  end)

  it("sum fusion reads each modality through the shared Linear", function()
    local s_a = manual_score(manual_logits(W, B, 2, ZA_STRONG, 1), Y)
    local s_b = manual_score(manual_logits(W, B, 2, ZB_WEAK, 1), Y)
    local k = values(rules.ogm{ alpha = 0.3 }.on_step(ctx_for(model("sum"), ZA_STRONG, ZB_WEAK)))
    local expect = s_b / s_a > 1 and { 1, 1 - math.tanh(0.3 * s_b / s_a) } or { 1 - math.tanh(0.3 * s_a / s_b), 1 }
    close(k[1], expect[1], 1e-6, "k_audio"); close(k[2], expect[2], 1e-6, "k_image")
  end)

  it("a score that is not > 0 (NaN here) leaves every k at 1 and the gradients as they were", function()
    for _, variant in ipairs({ "cvpr", "tpami" }) do
      local m = model()
      local before = set_grads(m)
      local za = { { 0 / 0, 1.0 }, { 1.0, 1.0 } }
      local k = values(rules.ogm{ variant = variant }.on_step(ctx_for(m, za, ZB_WEAK)))
      assert.are.same({ 1, 1 }, k)
      assert.are.same({}, changed(m, before))
    end
  end)

  it("modulates only in [modulation_start, modulation_end], 0-based (ctx.epoch - 1)", function()
    local r = rules.ogm{ modulation_start = 2, modulation_end = 3 }
    for epoch, on in pairs({ [2] = false, [3] = true, [4] = true, [5] = false }) do
      local m = model()
      local before = set_grads(m)
      local k = values(r.on_step(ctx_for(m, ZA_STRONG, ZB_WEAK, epoch)))
      assert.are.equal(on, k ~= nil, "epoch " .. epoch)
      assert.are.equal(on and 1 or 0, #changed(m, before), "changed grads at epoch " .. epoch)
    end
  end)

  it("logs the epoch's mean k per modality in the row's action, 'off' outside the window", function()
    local r = rules.ogm{ modulation_end = 0 }
    local m = model()
    set_grads(m)
    local ctx = ctx_for(m, ZA_STRONG, ZB_WEAK, 1)
    local k1 = values(r.on_step(ctx))
    ctx.out.latents = { audio = miles.tensor(ZA_WEAK), image = miles.tensor(ZB_STRONG) }
    local k2 = values(r.on_step(ctx))
    r.on_epoch_end(ctx)
    local ka, kb = (k1[1] + k2[1]) / 2, (k1[2] + k2[2]) / 2
    assert(ka < 1 and kb < 1, "both modalities were slowed once")
    close(ctx.log.k.audio, ka, 1e-12, "mean k_audio"); close(ctx.log.k.image, kb, 1e-12, "mean k_image")
    assert.are.equal(("k_audio=%.4f k_image=%.4f"):format(ka, kb), ctx.log.action)
    ctx.epoch, ctx.log = 2, {}
    assert.is_nil(r.on_step(ctx))
    r.on_epoch_end(ctx)
    assert.are.equal("off", ctx.log.action)
    assert.truthy(ctx.log.reason:find("0..0", 1, true))
  end)

  it("tpami, three modalities: rho_m = mean_j s_m / s_j, k_m = max(0, 1 - alpha tanh(rho_m - 1)) if rho_m > 1", function()
    miles.manual_seed(0)
    local m = fusion.Model{ encoders = { a = conv_enc(1, 2, 2), b = conv_enc(1, 2, 2), c = conv_enc(1, 2, 2) },
                            order = { "a", "b", "c" }, classes = 3 }
    local w6 = {}
    for c = 1, 3 do w6[c] = { W[c][1], W[c][2], W[c][3], W[c][4], W[c][2], W[c][1] } end
    miles.no_grad(function()
      m.fusion_head.weight:copy_(miles.tensor(w6))
      m.fusion_head.bias:copy_(miles.tensor(B))
    end)
    local z = { a = ZA_STRONG, b = ZB_WEAK, c = { { 1.0, 0.5 }, { -1.0, 1.0 } } }
    local s = {}
    for i, name in ipairs({ "a", "b", "c" }) do s[i] = manual_score(manual_logits(w6, B, 3, z[name], 2 * i - 1), Y) end
    local expect, above = {}, 0
    for i = 1, 3 do
      local rho = 0
      for j = 1, 3 do if j ~= i then rho = rho + s[i] / s[j] / 2 end end
      expect[i] = rho > 1 and math.max(0, 1 - 0.6 * math.tanh(rho - 1)) or 1
      if rho > 1 then above = above + 1 end
    end
    assert(above >= 1 and above <= 2, "fixture: some but not all rho above 1")
    local before = set_grads(m)
    local ctx = { model = m, order = m.order, epoch = 1, batch = { y = miles.tensor(Y, { dtype = "int64" }) },
                  out = { latents = { a = miles.tensor(z.a), b = miles.tensor(z.b), c = miles.tensor(z.c) } } }
    local r = rules.ogm{ variant = "tpami", alpha = 0.6 }
    r.setup(ctx)
    local k = values(r.on_step(ctx))
    for i = 1, 3 do close(k[i], expect[i], 1e-6, "k_" .. m.order[i]) end
    assert.are.equal(above, #changed(m, before))
    -- the clamp at 0: a huge alpha on two modalities
    local k2 = values(rules.ogm{ variant = "tpami", alpha = 1e6 }.on_step(ctx_for(model(), ZA_STRONG, ZB_WEAK)))
    assert.are.same({ 0, 1 }, k2)
  end)

  it("refuses other fusion heads, cvpr beyond two modalities, multi-label targets and bad options", function()
    for _, head in ipairs({ nn.Identity(), function(list) return list[1] end }) do
      local custom = fusion.Model{ encoders = { audio = conv_enc(1, 2, 2), image = conv_enc(1, 2, 2) }, classes = 3,
                                   fusion = head }
      raises(function() rules.ogm().setup({ model = custom, order = custom.order }) end,
        "rules.ogm:", "'concat' or 'sum'", custom.fusion_kind)
      raises(function() rules.ogm_ge().setup({ model = custom, order = custom.order }) end, "rules.ogm_ge:")
    end
    local three = { model = model(), order = { "a", "b", "c" } }
    raises(function() rules.ogm().setup(three) end, "cvpr", "3", "tpami")
    raises(function() rules.ogm{ variant = "tpami" }.setup({ model = model(), order = { "a" } }) end,
      "two modalities or more", "has 1")
    local ctx = ctx_for(model(), ZA_STRONG, ZB_WEAK)
    ctx.batch.y = miles.zeros(2, 3)
    raises(function() rules.ogm().on_step(ctx) end, "one class label", "2x3")
    raises(function() rules.ogm{ alpha = 0 } end, "alpha", "0")
    raises(function() rules.ogm{ variant = "icml" } end, "variant", "icml")
    raises(function() rules.ogm{ modulation_start = -1 } end, "modulation_start", "-1")
    raises(function() rules.ogm{ modulation_start = 5, modulation_end = 4 } end, "modulation_end", "4")
    raises(function() rules.ogm_ge{ modulation_starts = 0 } end, "rules.ogm_ge", "unknown option", "modulation_starts")
    raises(function() rules.ogm{ heads = "both" } end, "heads", "both")
  end)
end)

describe("rules.ogm_ge", function()
  it("adds N(0, (std(g) + 1e-8)^2) noise to both encoders' scaled conv grads, nothing else", function()
    local m = model("concat", 16, 32)   -- conv weights 32x16x3x3: 4608 values each
    local before = set_grads(m)
    for _, name in ipairs({ "audio", "image" }) do   -- different scales per encoder
      local key = "encoders." .. name .. ".0.weight"
      local g = before[key] * (name == "audio" and 3 or 0.5)
      m.encoders[name][1].weight.grad, before[key] = g, g:clone()
    end
    local r = rules.ogm_ge{ alpha = 0.8 }
    assert.are.equal("ogm_ge", r.name)
    assert.is_true(r.noise)
    miles.manual_seed(7)
    local k = values(r.on_step(ctx_for(m, ZA_STRONG, ZB_WEAK)))
    assert(k[1] < 1 and k[2] == 1, "audio dominates the fixture")
    assert.are.same({ "encoders.audio.0.weight", "encoders.image.0.weight" }, changed(m, before))
    for i, name in ipairs({ "audio", "image" }) do
      local key = "encoders." .. name .. ".0.weight"
      local noise = m.encoders[name][1].weight.grad - before[key] * k[i]
      local want = before[key]:std():item() + 1e-8
      local got_sd, got_mean = noise:std():item(), noise:mean():item()
      assert(math.abs(got_sd / want - 1) < 0.05, ("%s: noise std %.4f, want %.4f"):format(name, got_sd, want))
      assert(math.abs(got_mean) < 4 * want / math.sqrt(noise:numel()), name .. ": noise mean " .. got_mean)
    end
  end)
end)

describe("OGM through train.Trainer", function()
  local DS = train.toy_dataset{ n = 128, classes = 4, seed = 0 }
  local conv_model = H.conv_fusion_model

  for _, name in ipairs({ "ogm", "ogm_ge" }) do
    it(name .. ": 2 epochs, modulated in epoch 1 only (modulation_end = 0), lrs left at alpha", function()
      local t = train.Trainer{ model = conv_model(), dataset = DS, rule = name,
                               rule_opts = { modulation_end = 0 }, lr = 1e-2, epochs = 2, batch_size = 32,
                               seed = 0, workers = 1, quiet = true }
      assert.are.equal("probe", t.model.head_mode)
      t:fit()
      assert.are.equal(2, #t.history)
      local ka, kb = t.history[1].action:match("^k_audio=([%d.]+) k_image=([%d.]+)$")
      assert(ka and kb, "row 1 action: " .. tostring(t.history[1].action))
      ka, kb = tonumber(ka), tonumber(kb)
      -- the clean "audio" modality dominates every step: only it is slowed
      assert(ka > 0 and ka < 1 and kb == 1, t.history[1].action)
      assert.are.equal("off", t.history[2].action)
      for _, row in ipairs(t.history) do
        assert.are.same({ 1e-2, 1e-2, 1e-2 }, { row.lr_audio, row.lr_image, row.lr_fusion })
      end
    end)
  end
end)
