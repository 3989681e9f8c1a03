-- miles.fusion and miles.train on a tiny synthetic set (train.toy_dataset: 256
-- samples of two 1x8x8 modalities, "audio" clean and "image" noisy) with tiny
-- encoders (Flatten + Linear + ReLU).
local miles = require "miles"
local nn = miles.nn
local F = miles.F
local fusion = require "miles.fusion"
local train = require "miles.train"
local rules = require "miles.rules"
local checkpoint = require "miles.checkpoint"

local DS = train.toy_dataset{ n = 256, classes = 4, seed = 0 }

local function enc(d) return nn.Sequential(nn.Flatten(), nn.Linear(64, d or 16), nn.ReLU()) end

local function model(opts)
  opts = opts or {}
  miles.manual_seed(opts.seed or 0)
  return fusion.Model{ encoders = { audio = enc(), image = enc() }, order = { "audio", "image" },
                       classes = 4, fusion = opts.fusion, head_mode = opts.head_mode }
end

local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p '" .. dir .. "'")
  return dir
end

local function args(extra)
  local a = { model = model(), dataset = DS, rule = rules.miles{ tau = 0.2, mu = 0.5 }, lr = 1e-2,
              epochs = 3, batch_size = 32, seed = 0, workers = 1 }
  for k, v in pairs(extra or {}) do a[k] = v end
  return a
end

-- Rows without the wall-clock column.
local function strip(history)
  local out = {}
  for i, r in ipairs(history) do
    local c = {}
    for k, v in pairs(r) do if k ~= "seconds" then c[k] = v end end
    out[i] = c
  end
  return out
end

-- Compare two tables deeply, NaN equal to NaN.
local function same(a, b, path)
  path = path or "value"
  if type(a) == "number" and type(b) == "number" then
    assert(a == b or (a ~= a and b ~= b), ("%s: %.17g ~= %.17g"):format(path, a, b))
    return
  end
  assert(type(a) == type(b), path .. ": " .. type(a) .. " vs " .. type(b))
  if type(a) ~= "table" then
    assert(a == b, path .. ": " .. tostring(a) .. " ~= " .. tostring(b)); return
  end
  for k, v in pairs(a) do same(v, b[k], path .. "." .. tostring(k)) end
  for k in pairs(b) do assert(a[k] ~= nil, path .. "." .. tostring(k) .. " missing") end
end

describe("fusion.Model", function()
  it("gives fused, per-head logits and latents, and one group per modality plus fusion", function()
    local m = model()
    local x = { audio = miles.randn(5, 1, 8, 8), image = miles.randn(5, 1, 8, 8) }
    local out = m(x)
    assert.are.same({ 5, 4 }, out.fused:shape())
    assert.are.same({ 5, 4 }, out.heads.audio:shape())
    assert.are.same({ 5, 16 }, out.latents.image:shape())
    local g = m:param_groups()
    assert.are.same({ "audio", "image", "fusion" }, { g[1].name, g[2].name, g[3].name })
    assert.are.equal(4, #g[1].params)   -- encoder Linear + head Linear
    assert.are.equal(2, #g[3].params)   -- fusion Linear(32, 4)
    assert.are.same({ 4, 32 }, m.fusion_head.weight:shape())
  end)

  it("sum fusion needs equal latent sizes", function()
    local m = fusion.Model{ encoders = { audio = enc(), image = enc() }, classes = 4, fusion = "sum" }
    assert.are.same({ 4, 16 }, m.fusion_head.weight:shape())
    local ok, err = pcall(fusion.Model, { encoders = { audio = enc(8), image = enc(16) }, classes = 4,
                                          fusion = "sum" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("equal latent sizes", 1, true))
  end)

  it("a custom fusion module's parameters form the fusion group", function()
    local Head = nn.Module:extend("TestHead")
    function Head:init() self.lin = nn.Linear(16, 4) end
    function Head:forward(list) return self.lin(list[1] * list[2]) end
    local m = model{ fusion = Head() }
    local g = m:param_groups()
    assert.are.equal(2, #g[3].params)
    assert.are.same({ 3, 4 }, m{ audio = miles.randn(3, 1, 8, 8), image = miles.randn(3, 1, 8, 8) }.fused:shape())
  end)

  it("probe mode keeps head losses out of the encoders; loss mode lets them in", function()
    local x = { audio = miles.randn(6, 1, 8, 8), image = miles.randn(6, 1, 8, 8) }
    local y = miles.tensor({ 1, 2, 3, 4, 1, 2 }, { dtype = "int64" })
    for _, mode in ipairs({ "probe", "loss" }) do
      local m = model{ head_mode = mode }
      local out = m(x)
      local l = F.cross_entropy(out.heads.audio, y) + F.cross_entropy(out.heads.image, y)
      l:backward()
      local enc_w = m.encoders.audio[2].weight
      local enc_grad = enc_w.grad and miles.no_grad(function() return enc_w.grad:abs():sum():item() end) or 0
      local head_grad = miles.no_grad(function() return m.heads.audio.weight.grad:abs():sum():item() end)
      assert(head_grad > 0, mode .. ": the head got no gradient")
      if mode == "probe" then
        assert.are.equal(0, enc_grad)
      else
        assert(enc_grad > 0, "loss mode: the encoder got no gradient from the head loss")
      end
      assert.is_nil(m.fusion_head.weight.grad)
    end
  end)
end)

describe("train.Trainer", function()
  it("fits 3 epochs: full history rows, best epoch by val fused metric, test metrics", function()
    local dir = tmpdir()
    local t = train.Trainer(args{ log_dir = dir })
    local s = t:fit()
    assert.are.equal(3, #t.history)
    for _, r in ipairs(t.history) do
      for _, col in ipairs(t.columns) do
        if col ~= "action" then assert(type(r[col]) == "number", "column " .. col .. " missing") end
      end
      assert.is_string(r.action)
    end
    local best, score = nil, -1
    for _, r in ipairs(t.history) do
      if r.val_accuracy_fused > score then best, score = r.epoch, r.val_accuracy_fused end
    end
    assert.are.equal(best, s.best_epoch)
    assert.are.equal(score, s.val.fused)
    for _, k in ipairs({ "fused", "audio", "image", "delta" }) do
      assert.is_number(s.test[k])
      assert(s.test[k] >= 0 and s.test[k] <= 1)
    end
    assert(math.abs(s.test.delta - math.abs(s.test.audio - s.test.image)) < 1e-12)
    -- the log files
    local csv = io.open(dir .. "/log.csv"):read("a")
    local n = 0
    for _ in csv:gmatch("\n") do n = n + 1 end
    assert.are.equal(4, n)
    assert.truthy(csv:find("val_accuracy_fused", 1, true))
    local jl = io.open(dir .. "/log.jsonl"):read("a")
    local first = checkpoint.json_decode(jl:match("^[^\n]+"))
    assert.are.equal(1, first.epoch)
    assert.is_number(first.u_audio)
    assert.is_table(checkpoint.json_decode(io.open(dir .. "/summary.json"):read("a")).test)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("writes NaN as null in JSONL and empty in CSV (vanilla has no u)", function()
    local dir = tmpdir()
    local t = train.Trainer(args{ log_dir = dir, rule = rules.vanilla(), epochs = 1 })
    t:fit()
    assert.are.equal("probe", t.model.head_mode)
    local jl = io.open(dir .. "/log.jsonl"):read("a")
    assert.truthy(jl:find('"u_audio":null', 1, true))
    assert.truthy(jl:find('"delta":null', 1, true))
    local csv = io.open(dir .. "/log.csv"):read("a")
    local header, row = csv:match("^([^\n]+)\n([^\n]+)")
    local cols, cells = {}, {}
    for c in (header .. ","):gmatch("([^,]*),") do cols[#cols + 1] = c end
    for c in (row .. ","):gmatch("([^,]*),") do cells[#cells + 1] = c end
    assert.are.equal(#cols, #cells)
    for i, c in ipairs(cols) do
      if c == "u_audio" or c == "delta" then assert.are.equal("", cells[i]) end
    end
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("gives identical numbers for the same seed", function()
    local a = train.Trainer(args())
    local sa = a:fit()
    local b = train.Trainer(args())
    local sb = b:fit()
    same(strip(a.history), strip(b.history), "history")
    same(sa, sb, "summary")
  end)

  it("resumes from the checkpoint of epoch 2 to the same final numbers", function()
    local dir = tmpdir()
    local full = train.Trainer(args())
    local sf = full:fit()
    local path = dir .. "/last.safetensors"
    local part = train.Trainer(args{ checkpoint = path })
    part:epoch()
    part:epoch()
    local r = train.resume(path, args{ checkpoint = path })
    assert.are.equal(2, r.epoch_done)
    local sr = r:fit()
    same(strip(full.history), strip(r.history), "history")
    same(sf, sr, "summary")
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("takes a custom fusion head given as a plain function", function()
    miles.manual_seed(3)
    local W = miles.randn(4, 32) * 0.1
    local m = model{ fusion = function(list) return F.linear(miles.cat(list, 2), W) end }
    local t = train.Trainer(args{ model = m, epochs = 2 })
    assert.are.equal(0, #t.optimizer:group("fusion").params)
    local s = t:fit()
    assert.is_number(s.test.fused)
    assert.are.equal(2, #t.history)
  end)

  it("trains only the heads with head losses in probe mode (encoders untouched)", function()
    local m = model()
    local t = train.Trainer(args{ model = m, rule = { name = "heads_only", head_mode = "probe",
      loss_weights = function() return { fused = 0, audio = 1, image = 1 } end }, epochs = 1 })
    local before = miles.no_grad(function() return m.encoders.audio[2].weight:clone() end)
    local hb = miles.no_grad(function() return m.heads.audio.weight:clone() end)
    local seen = false
    t.rule.on_step = function(ctx)
      local g = m.encoders.audio[2].weight.grad
      assert(g == nil or miles.no_grad(function() return g:abs():sum():item() end) == 0,
        "the encoder got a gradient from a probe head")
      assert(m.heads.audio.weight.grad ~= nil, "the head got no gradient")
      seen = true
    end
    t:epoch()
    assert.is_true(seen)
    assert.is_true(miles.allclose(before, m.encoders.audio[2].weight, 0, 0))
    assert.is_false(miles.allclose(hb, m.heads.audio.weight, 0, 0))
  end)

  it("exposes and sets group learning rates", function()
    local t = train.Trainer(args())
    assert.are.equal(1e-2, t:lr("audio"))
    t:set_lr("audio", 1e-4)
    assert.are.equal(1e-4, t:lr("audio"))
  end)
end)
