-- miles.fusion and miles.train on a tiny synthetic set (train.toy_dataset: 256
-- samples of two 1x8x8 modalities, "audio" clean and "image" noisy) with tiny
-- encoders (Flatten + Linear + ReLU, or + BatchNorm1d where batch-norm state
-- matters): fitting, logs, progress output, resume, the group operations rules
-- use (state, snapshots, freezing), model copies and probe runs, multi-label
-- and three-modality runs. (Killed-and-resumed runs: train_resume_spec.lua.)
local miles = require "miles"
local nn = miles.nn
local F = miles.F
local fusion = require "miles.fusion"
local train = require "miles.train"
local rules = require "miles.rules"
local checkpoint = require "miles.checkpoint"
local H = require "helpers"

local DS = train.toy_dataset{ n = 256, classes = 4, seed = 0 }

local function enc(d) return nn.Sequential(nn.Flatten(), nn.Linear(64, d or 16), nn.ReLU()) end
local function bn_enc() return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU()) end

local function model(opts)
  opts = opts or {}
  miles.manual_seed(opts.seed or 0)
  local e = opts.bn and bn_enc or enc
  return fusion.Model{ encoders = { audio = e(), image = e() }, order = { "audio", "image" },
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
              epochs = 3, batch_size = 32, seed = 0, workers = 1, quiet = true }
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
        if col ~= "action" and col ~= "reason" then assert(type(r[col]) == "number", "column " .. col .. " missing") end
      end
      assert.is_string(r.action)
      assert(r.reason == nil or type(r.reason) == "string", "reason is text when present")
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

  it("trains under bf16 autocast with autocast = true: bf16 activations, float32 weights and "
     .. "metrics, close to float32 training, the switch restored", function()
    local seen = {}
    local m = model({ bn = true })
    local fwd = m.forward
    m.forward = function(self, inputs) -- what the encoders give, each step
      local out = fwd(self, inputs)
      seen[#seen + 1] = out.fused:dtype()
      return out
    end
    local t = train.Trainer(args{ model = m, autocast = true, epochs = 2 })
    assert.is_false(miles.autocast())
    local s = t:fit()
    assert.is_false(miles.autocast())
    assert.equal("bfloat16", seen[1])
    for _, p in ipairs(m:parameters()) do assert.equal("float32", p:dtype()) end
    local ref = train.Trainer(args{ model = model({ bn = true }), epochs = 2 }):fit()
    for _, k in ipairs({ "fused", "audio", "image" }) do
      assert.is_number(s.test[k])
      assert(math.abs(s.test[k] - ref.test[k]) < 0.1,
        ("%s: test accuracy %.3f under autocast, %.3f in float32"):format(k, s.test[k], ref.test[k]))
    end
    assert.has_error(function() train.Trainer(args{ autocast = "yes" }) end,
      "train.Trainer: autocast must be a boolean, got string")
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

  it("tallies a pass in bunches: per-head means in order, totals only where a batch has one", function()
    local t = train.Trainer(args{})
    local tally = t:_tally()
    local heads = tally.heads
    local sizes, totals = { 3, 5, 2, 4 }, { false, 2.5, false, 1.25 } -- (all weights 0: no total)
    local want, n, want_total = {}, 0, 0
    for _, h in ipairs(heads) do want[h] = 0 end
    for i, bs in ipairs(sizes) do
      local logits, losses = {}, {}
      for k, h in ipairs(heads) do
        logits[h] = miles.randn(bs, 4)
        losses[h] = miles.tensor(0.1 * i + k)
        want[h] = want[h] + (0.1 * i + k) * bs
      end
      local total = totals[i] and miles.tensor(totals[i]) or nil
      if total then want_total = want_total + totals[i] * bs end
      n = n + bs
      tally:add(logits, losses, total, miles.randint(1, 5, { bs }))
    end
    local res, mean_total = tally:results()
    for _, h in ipairs(heads) do assert.near(want[h] / n, res.loss[h], 1e-6) end
    assert.near(want_total / n, mean_total, 1e-6)
  end)

  it("exposes and sets group learning rates", function()
    local t = train.Trainer(args())
    assert.are.equal(1e-2, t:lr("audio"))
    t:set_lr("audio", 1e-4)
    assert.are.equal(1e-4, t:lr("audio"))
  end)
end)

-- A stream that keeps what is written (for the progress output).
local function capture()
  local parts = {}
  return { write = function(_, ...) for _, x in ipairs({ ... }) do parts[#parts + 1] = tostring(x) end end,
           flush = function() end, text = function() return table.concat(parts) end }
end

local copy_sd, same_values = H.copy_state, H.same_state

describe("train.Trainer progress output", function()
  it("prints a line per epoch with the val metrics, u, delta, action; quiet prints nothing", function()
    local out = capture()
    local t = train.Trainer(args{ quiet = false, stream = out, epochs = 2 })
    t:fit()
    local text = out.text()
    -- not a terminal: the bar is sparse (a line every 30 s, none in a short epoch),
    -- so only the epoch lines are printed
    assert.is_nil(text:find("epoch 1/2: ", 1, true))
    for e, r in ipairs(t.history) do
      local line = ("epoch %d/2  train loss %.4f  val accuracy fused %.4f audio %.4f image %.4f  u audio %.3f image %.3f  delta %.3f  %s  %.1f s")
        :format(e, r.train_loss, r.val_accuracy_fused, r.val_accuracy_audio, r.val_accuracy_image, r.u_audio,
                r.u_image, r.delta, r.action, r.seconds)
      local at = text:find(line, 1, true)
      assert(at, "no line " .. line .. " in\n" .. text)
      local rest = text:sub(at + #line):match("^[^\n]*")
      if e == 1 then assert.truthy(rest:find("^, ETA %d+:%d%d$")) else assert.are.equal("", rest) end
    end
    local quiet = capture()
    train.Trainer(args{ quiet = true, stream = quiet, epochs = 1 }):fit()
    assert.are.equal("", quiet.text())
  end)
end)

describe("train.clone_module", function()
  it("copies parameters and buffers into a model with the same outputs that shares no tensor", function()
    local m = model{ bn = true }
    local c = train.clone_module(m)
    assert.are.equal(getmetatable(m), getmetatable(c))
    assert.are.equal(getmetatable(m.encoders.audio[3]), getmetatable(c.encoders.audio[3]))
    assert.are.same(m.order, c.order)
    local x = { audio = miles.randn(6, 1, 8, 8), image = miles.randn(6, 1, 8, 8) }
    m:eval(); c:eval()
    assert.is_true(miles.allclose(m(x).fused, c(x).fused, 0, 0))
    local ps, cs = m:parameters(), c:parameters()
    assert.are.equal(#ps, #cs)
    for i = 1, #ps do
      assert.are_not.equal(ps[i], cs[i])
      assert.is_true(cs[i].requires_grad)
      assert.is_true(cs[i].is_leaf)
    end
    -- training the copy changes neither the original's weights nor its batch-norm statistics
    local before = copy_sd(m:state_dict())
    c:train()
    local l = F.cross_entropy(c(x).fused, miles.tensor({ 1, 2, 3, 4, 1, 2 }, { dtype = "int64" }))
    l:backward()
    miles.optim.SGD(c:parameters(), { lr = 0.5 }):step()
    assert.is_true(same_values(before, m:state_dict()))
    assert.is_false(same_values(before, c:state_dict()))
  end)
end)

describe("train.Trainer groups", function()
  it("splits the state dict by group: encoders.<name> + heads.<name>, and fusion_head", function()
    local t = train.Trainer(args{ model = model{ bn = true } })
    local all, seen = t.model:state_dict(), {}
    local prefixes = { audio = { "encoders.audio.", "heads.audio." }, image = { "encoders.image.", "heads.image." },
                       fusion = { "fusion_head." } }
    local counts = {}
    for g, pre in pairs(prefixes) do
      counts[g] = 0
      for k, v in pairs(t:group_state(g)) do
        assert(k:sub(1, #pre[1]) == pre[1] or (pre[2] and k:sub(1, #pre[2]) == pre[2]), g .. ": " .. k)
        assert.is_nil(seen[k])
        assert.is_true(miles.allclose(v:to("float64"), all[k]:to("float64"), 0, 0))
        seen[k], counts[g] = true, counts[g] + 1
      end
    end
    for k in pairs(all) do assert(seen[k], k .. " is in no group") end
    -- Linear (2) + BatchNorm1d (2 + 3 buffers) + head (2); fusion Linear (2)
    assert.are.same({ audio = 9, image = 9, fusion = 2 }, counts)
    assert.truthy(H.error_of(function() t:group_state("text") end):find("no group 'text'", 1, true))
  end)

  it("snapshots a group and restores it; unknown snapshots are errors", function()
    local t = train.Trainer(args{ model = model{ bn = true } })
    t:snapshot_group("audio", "start")
    t:epoch()
    local snap = t.snapshots.start
    assert.is_false(same_values(snap, t:group_state("audio")))
    local image = copy_sd(t:group_state("image"))
    t:restore_group("audio", "start")
    assert.is_true(same_values(snap, t:group_state("audio")))
    assert.is_true(same_values(image, t:group_state("image")))
    assert.truthy(H.error_of(function() t:restore_group("audio", "nope") end):find("no snapshot 'nope'", 1, true))
    assert.truthy(H.error_of(function() t:snapshot_group("audio", "a b") end):find("tag", 1, true))
  end)

  it("a frozen group keeps weights, batch-norm statistics and Adam state; unfreezing restores its lr", function()
    local t = train.Trainer(args{ model = model{ bn = true }, rule = rules.vanilla{ heads = "loss" } })
    t:epoch()
    local p_audio = t.optimizer:group("audio").params[1]
    local p_image = t.optimizer:group("image").params[1]
    local step_a, step_i = t.optimizer.state[p_audio].step, t.optimizer.state[p_image].step
    local audio, image = copy_sd(t:group_state("audio")), copy_sd(t:group_state("image"))
    t:freeze_group("audio")
    assert.are.equal(0, t:lr("audio"))
    assert.is_false(p_audio.requires_grad)
    t:epoch()
    assert.is_true(same_values(audio, t:group_state("audio")))   -- running_mean/var, num_batches_tracked too
    assert.is_false(same_values(image, t:group_state("image")))
    assert.are.equal(step_a, t.optimizer.state[p_audio].step)
    assert.are.equal(step_i + 4, t.optimizer.state[p_image].step)
    assert.are.equal(0, t.history[2].lr_audio)
    assert.are.equal(1e-2, t.history[2].lr_image)
    t:unfreeze_group("audio")
    assert.are.equal(1e-2, t:lr("audio"))
    assert.is_true(p_audio.requires_grad)
    t:epoch()
    assert.is_false(same_values(audio, t:group_state("audio")))
  end)

  it("a rule's finalize gives the final weights; a rule's stop, frozen groups and snapshots survive resume", function()
    local function rule()
      return { name = "test", head_mode = "loss", state = {},
        on_epoch_end = function(ctx)
          if ctx.epoch == 1 then
            ctx.trainer:snapshot_group("image", "first")
            ctx.trainer:freeze_group("audio")
          end
          if ctx.epoch == 2 then ctx.stop = true end
        end,
        finalize = function(ctx)
          local sd = {}
          for k, v in pairs(ctx.model:state_dict()) do sd[k] = v end
          for k, v in pairs(ctx.trainer.snapshots.first) do sd[k] = v end
          return sd
        end }
    end
    local dir = tmpdir()
    local path = dir .. "/last.safetensors"
    local t = train.Trainer(args{ rule = rule(), epochs = 5, checkpoint = path })
    local s = t:fit()
    assert.are.equal(2, t.epoch_done)
    assert.are.equal("finalize", s.weights)
    assert.is_true(same_values(t.snapshots.first, t:group_state("image")))
    assert.are.equal(t:evaluate("val").fused.accuracy, s.val.fused)
    local r = train.resume(path, args{ rule = rule(), epochs = 5 })
    assert.is_true(r.ctx.stop)
    assert.are.equal(1e-2, r.frozen.audio)
    assert.is_false(r.optimizer:group("audio").params[1].requires_grad)
    assert.is_true(same_values(t.snapshots.first, r.snapshots.first))
    local s2 = r:fit()
    assert.are.equal(2, r.epoch_done)
    same(s, s2, "summary")
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)

describe("train.Trainer copies (probe runs)", function()
  it("holds out a seeded part of the training split", function()
    local t = train.Trainer(args())
    local kept, held = t:holdout(0.1)
    assert.are.equal(13, held:numel())   -- round(0.1 * 128)
    assert.are.equal(115, kept:numel())
    local all = {}
    for _, i in ipairs(kept:totable()) do all[#all + 1] = i end
    for _, i in ipairs(held:totable()) do all[#all + 1] = i end
    table.sort(all)
    assert.are.same(DS:split("train").indices:totable(), all)
    local k2, h2 = t:holdout(0.1)
    assert.are.same(held:totable(), h2:totable())
    local _, h3 = train.Trainer(args{ seed = 1 }):holdout(0.1)
    assert.are_not.same(held:totable(), h3:totable())
    assert.truthy(H.error_of(function() t:holdout(1) end):find("fraction must be in (0, 1), got 1", 1, true))
  end)

  it("trains a copy on the given loss weights and measures losses, leaving the trainer as it was", function()
    local t = train.Trainer(args{ rule = rules.vanilla{ heads = "loss" } })
    local kept, held = t:holdout(0.25)
    local before = copy_sd(t.model:state_dict())
    local rng = miles.get_rng_state()
    local w = { fused = 0, audio = 1, image = 0 }
    local p = t:probe_run{ epochs = 2, loss_weights = w, train = kept, held_out = held }
    assert.is_true(same_values(before, t.model:state_dict()))
    assert.are.same(rng, miles.get_rng_state())
    assert.is_nil(next(t.optimizer.state))
    -- the start is the model's own losses on T and V
    assert.are.same(t:evaluate(kept).loss, p.start.train)
    assert.are.same(t:evaluate(held).loss, p.start.held_out)
    -- only the audio branch trained (weight 0: no gradient for image and fusion)
    local c = p.model
    assert.is_false(miles.allclose(c.encoders.audio[2].weight, t.model.encoders.audio[2].weight, 0, 0))
    assert.is_true(miles.allclose(c.encoders.image[2].weight, t.model.encoders.image[2].weight, 0, 0))
    assert.is_true(miles.allclose(c.fusion_head.weight, t.model.fusion_head.weight, 0, 0))
    assert(p.epochs[2].train.audio < p.epochs[1].train.audio and p.epochs[1].train.audio < p.start.train.audio,
      "the audio head's training loss did not fall")
    assert.are.same(p.start.train.image, p.epochs[2].train.image)
    -- the same again
    local q = t:probe_run{ epochs = 2, loss_weights = w, train = kept, held_out = held }
    assert.are.same(p.epochs, q.epochs)
  end)
end)

describe("train.Trainer on other label and modality layouts", function()
  it("multi-label: float multi-hot labels, BCE losses, F1 macro at threshold 0.5", function()
    -- sample of class c has labels c and c % 4 + 1
    local y = {}
    for i, c in ipairs(DS.labels:totable()) do
      y[i] = { 0, 0, 0, 0 }
      y[i][c], y[i][c % 4 + 1] = 1, 1
    end
    local ml = miles.data.Dataset{ modalities = DS.modalities, splits = DS.splits,
                                   labels = miles.tensor(y, { dtype = "float32" }) }
    local t = train.Trainer(args{ dataset = ml, epochs = 2 })
    assert.are.equal("f1_macro", t.metric)
    local s = t:fit()
    assert.is_number(t.history[2].val_f1_macro_fused)
    -- the test F1 macro of the final model, by hand: logit > 0 is a positive
    local test = ml:split("test")
    local out = miles.no_grad(function()
      t.model:eval()
      return t.model{ audio = test:tensor("audio"), image = test:tensor("image") }
    end)
    local function f1_macro(logits)
      local pred, truth, f1 = logits:totable(), test:labels():totable(), 0
      for k = 1, 4 do
        local tp, fp, fn = 0, 0, 0
        for i = 1, #pred do
          local p1, y1 = pred[i][k] > 0, truth[i][k] == 1
          if p1 and y1 then tp = tp + 1 elseif p1 then fp = fp + 1 elseif y1 then fn = fn + 1 end
        end
        f1 = f1 + (tp > 0 and 2 * tp / (2 * tp + fp + fn) or 0)
      end
      return f1 / 4
    end
    assert(math.abs(s.test.fused - f1_macro(out.fused)) < 1e-12, "fused F1")
    assert(math.abs(s.test.audio - f1_macro(out.heads.audio)) < 1e-12, "audio F1")
    assert(s.test.audio > 0.8, "the clean modality learned too little: " .. s.test.audio)
  end)

  it("three modalities: a group each, u_i = (M_fused - mean of the others) / M_fused", function()
    miles.manual_seed(5)
    local text = DS.modalities.image * 0.5 + miles.randn(256, 1, 8, 8)
    local ds3 = miles.data.Dataset{ modalities = { audio = DS.modalities.audio, image = DS.modalities.image,
                                                   text = text }, labels = DS.labels, splits = DS.splits }
    miles.manual_seed(0)
    local m = fusion.Model{ encoders = { audio = enc(), image = enc(), text = enc() },
                            order = { "audio", "image", "text" }, classes = 4 }
    local t = train.Trainer(args{ model = m, dataset = ds3, epochs = 2, rule = rules.miles{ tau = 0.1, mu = 0.5 } })
    local s = t:fit()
    assert.are.same({ "audio", "image", "text", "fusion" }, t.group_names)
    for _, col in ipairs({ "u_text", "lr_text", "val_accuracy_text", "train_loss_text" }) do
      assert.is_number(t.history[1][col], col)
    end
    for _, r in ipairs(t.history) do
      local M = { audio = r.val_accuracy_audio, image = r.val_accuracy_image, text = r.val_accuracy_text }
      local u = {}
      for _, i in ipairs({ "audio", "image", "text" }) do
        local others = 0
        for _, j in ipairs({ "audio", "image", "text" }) do if j ~= i then others = others + M[j] / 2 end end
        u[i] = (r.val_accuracy_fused - others) / r.val_accuracy_fused
        assert(math.abs(r["u_" .. i] - u[i]) < 1e-12, "u_" .. i)
      end
      local hi = math.max(u.audio, u.image, u.text)
      local lo = math.min(u.audio, u.image, u.text)
      assert(math.abs(r.delta - (hi - lo)) < 1e-12, "delta")
      assert.are.equal(1e-2, r.lr_fusion)
    end
    assert.is_number(s.test.text)
    assert(math.abs(s.test.delta - (math.max(s.test.audio, s.test.image, s.test.text) -
      math.min(s.test.audio, s.test.image, s.test.text))) < 1e-12)
  end)
end)
