-- The bfloat16 dtype: its rounding and promotion, every kernel family on it (the
-- cpu's float32 kernels on exact float32 copies, rounded once: csrc/widen.c; the
-- GPU's own kernels against them), autograd through casts, bf16 autocast's
-- casts, files, and the errors for what it cannot do.
local miles = require "miles"
local H = require "helpers"
local gpu_it = H.gpu_specs(it, describe, pending)
local F = miles.F

-- x rounded to bfloat16 and back to float32: the value a bf16 tensor holds.
local function bf(x) return miles.tensor(x):bfloat16():float() end

describe("bfloat16 values", function()
  it("has a name, an alias, and prints as such", function()
    local t = miles.zeros(3, { dtype = "bf16" })
    assert.equal("bfloat16", t:dtype())
    assert.equal("bfloat16", miles.ones(2):bfloat16():dtype())
    assert.truthy(tostring(miles.tensor({ 1.5 }):bfloat16()):find("dtype=bfloat16", 1, true))
  end)

  it("rounds float32 to nearest, ties to even, as PyTorch", function()
    local e = 2 ^ -8 -- half a bf16 ulp at 1: 1 + e is a tie
    H.assert_close(bf({ 1 + e, 1 + 3 * e, 1 + e * 1.5, -(1 + 3 * e) }),
      { 1, 1 + 4 * e, 1 + 2 * e, -(1 + 4 * e) }, 0, 0, "ties and halves")
    -- values PyTorch 1.13 gives for torch.tensor(v).bfloat16()
    H.assert_close(bf({ 3.14159265, 0.1, -1e-3, 65504 }),
      { 3.140625, 0.10009765625, -0.00099945068359375, 65536 }, 0, 0, "ordinary values")
  end)

  it("keeps infinities, NaN and subnormals; overflows to infinity", function()
    local t = bf({ 1 / 0, -1 / 0, 0 / 0, 3.4e38, -3.4e38, 3.38e38, 1e-40, 0 })
    local v = t:totable()
    assert.equal(math.huge, v[1])
    assert.equal(-math.huge, v[2])
    assert.is_true(v[3] ~= v[3])
    assert.equal(math.huge, v[4]) -- past the largest bf16 (3.3895e38) by more than half an ulp
    assert.equal(-math.huge, v[5])
    assert.equal(3.3762391092936863e38, v[6]) -- PyTorch's value
    assert.equal(9.183549615799121e-41, v[7]) -- PyTorch's value too
    assert.equal(0, v[8])
  end)

  it("is exact through float32 and float64 and back", function()
    miles.manual_seed(1)
    local x = miles.randn(1000):bfloat16()
    H.assert_close(x:float():bfloat16(), x, 0, 0, "float32 round trip")
    H.assert_close(x:double():bfloat16(), x, 0, 0, "float64 round trip")
    H.assert_close(x:to("int64"), x:float():to("int64"), 0, 0, "to int64 truncates")
  end)

  it("promotes as PyTorch: with float32 or float64 to them, with integers and scalars to bf16",
    function()
      local b = miles.ones(3):bfloat16()
      assert.equal("float32", (b + miles.ones(3)):dtype())
      assert.equal("float64", (b * miles.ones(3):double()):dtype())
      assert.equal("bfloat16", (b + miles.tensor({ 1, 2, 3 })):dtype())
      assert.equal("bfloat16", (b * 2.5):dtype())
      assert.equal("bfloat16", (b / 3):dtype())
      assert.equal("bool", b:gt(0):dtype())
      assert.equal("bfloat16", miles.tensor({ 1, 2 }):to("bfloat16"):dtype())
    end)

  it("meets a scalar bf16 cannot hold in float32, rounding once, as PyTorch", function()
    miles.manual_seed(2)
    local x = miles.randn(300):bfloat16()
    H.assert_close(x * 0.1, (x:float() * 0.1):bfloat16(), 0, 0, "x * 0.1")
    H.assert_close(x / 3, (x:float() / 3):bfloat16(), 0, 0, "x / 3")
    H.assert_close(x:gt(0.1):to("int64"), x:float():gt(0.1):to("int64"), 0, 0, "x > 0.1")
    -- the mean of 257 values: n is not a bf16 number (257 rounds to 256)
    local m = x:narrow(1, 1, 257):mean()
    assert.equal("bfloat16", m:dtype())
    H.assert_close(m, x:narrow(1, 1, 257):float():mean():bfloat16(), 0, 0, "mean of 257")
    -- dropout: the mask and the scale 1 / (1 - p) in float32, one rounding
    miles.manual_seed(3)
    local d16 = F.dropout(x, 0.1, true)
    miles.manual_seed(3)
    local d32 = F.dropout(x:float(), 0.1, true)
    assert.equal("bfloat16", d16:dtype())
    local dropped = d16:eq(0):to("int64"):sum():item()
    assert.is_true(dropped > 10 and dropped < 60, "dropped " .. dropped .. " of 300")
    H.assert_close(d16, d32:bfloat16(), 0, 0, "dropout")
  end)

  it("adds repeated indices in float32: index_select's gradient of 1000 copies is 1000", function()
    local x = miles.ones(1):bfloat16()
    x.requires_grad = true
    local y = x:index_select(1, miles.ones(1000, { dtype = "int64" }))
    y:sum():backward()
    assert.equal("bfloat16", x.grad:dtype())
    assert.equal(1000, x.grad:item()) -- adding in bf16 would stall at 256
  end)

  it("fills, draws random numbers and makes ranges in bf16", function()
    assert.same({ 2.5, 2.5 }, miles.full({ 2 }, 2.5, { dtype = "bfloat16" }):totable())
    -- uniform: multiples of 2^-8 below 1, as PyTorch's (24 random bits rounded to
    -- bf16 would reach 1 about once in 500)
    miles.manual_seed(5)
    local a = miles.rand(100000, { dtype = "bfloat16" }):float()
    assert.is_true(a:max():item() <= 1 - 2 ^ -8 and a:min():item() >= 0)
    H.assert_close(a * 256, (a * 256):to("int64"), 0, 0, "on the 2^-8 grid")
    assert.is_true(math.abs(a:mean():item() - (0.5 - 2 ^ -9)) < 3e-3, "mean " .. a:mean():item())
    miles.manual_seed(6)
    local n = miles.randn(100, { dtype = "bf16" })
    miles.manual_seed(6)
    H.assert_close(n, miles.randn(100):bfloat16(), 0, 0, "randn: the float32 draw rounded")
  end)
end)

-- --- every kernel family: bf16 against float32 on the same values ---

-- Inputs made in float32 and rounded to bf16, so a float32 run gets exactly the
-- values a bf16 run does.
local function input(dt, dev, ...)
  local t = miles.randn(...):bfloat16():to(dt):to(dev)
  t.requires_grad = true
  return t
end

local function channels_last(t) return t:permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3) end

-- Each case: fn(dt, dev) -> outputs, grads: lists of tensors. Outputs come from
-- one kernel each, so the bf16 run must give the float32 run's results rounded,
-- exactly; gradients may pass two kernels (a product, then a sum to a broadcast
-- shape), each rounding in bf16: they are compared within a bf16 rounding.
-- keep32 = {outputs = {i, ...}, grads = {i, ...}}: those that stay float32 in a
-- bf16 run (batch norm's parameters and statistics); the others are bf16 where
-- the float32 run's are float32.
local cases = {}
local function case(name, fn, keep32)
  cases[#cases + 1] = { name = name, fn = fn, keep32 = keep32 or { outputs = {}, grads = {} } }
end

-- Backward from a fixed bf16-exact gradient of y's shape; the inputs' gradients.
local function grads_of(y, dt, dev, ...)
  miles.manual_seed(99)
  y:backward(miles.randn(table.unpack(y:shape())):bfloat16():to(dt):to(dev))
  local out = {}
  for i, t in ipairs({ ... }) do out[i] = t.grad end
  return out
end

case("unary ops", function(dt, dev)
  miles.manual_seed(10)
  local x = input(dt, dev, 7, 9)
  local outs = { x:relu(), x:exp(), x:tanh(), x:sigmoid(), x:abs():sqrt(), -x, x:clamp(-0.5, 0.5) }
  return outs, grads_of(x:tanh(), dt, dev, x)
end)

case("binary ops with broadcasting, where, comparisons", function(dt, dev)
  miles.manual_seed(11)
  local a, b = input(dt, dev, 4, 1, 6), input(dt, dev, 5, 1)
  local m = input(dt, dev, 6, 9) -- columns: views with gaps
  local outs = { a + b, a * b, a / b, miles.maximum(a, b), a:gt(b),
                 miles.where(a:gt(0), a, b), m:select(2, 3) + m:select(2, 5) }
  return outs, grads_of(a * b, dt, dev, a, b)
end)

case("reductions", function(dt, dev)
  miles.manual_seed(12)
  local x = input(dt, dev, 6, 5, 4)
  local mx, idx = x:max(2)
  return { x:sum(2), x:mean(), mx, idx, x:var(3), x:logsumexp(1) }, grads_of(x:sum(3), dt, dev, x)
end)

case("matmul: plain, transposed, batched, of views with offsets", function(dt, dev)
  miles.manual_seed(13)
  local a, b = input(dt, dev, 9, 7), input(dt, dev, 11, 9)
  local p, q = input(dt, dev, 3, 5, 6), input(dt, dev, 3, 6, 4)
  local u = input(dt, dev, 8, 20)
  local outs = { miles.matmul(b, a), miles.matmul(a:t(), b:t()), miles.bmm(p, q),
                 miles.matmul(u:narrow(2, 3, 9), a) }
  return outs, grads_of(miles.matmul(b, a), dt, dev, a, b)
end)

case("softmax and log_softmax", function(dt, dev)
  miles.manual_seed(14)
  local x = input(dt, dev, 5, 8)
  return { F.softmax(x, 2), F.log_softmax(x, 1) }, grads_of(F.softmax(x, 2), dt, dev, x)
end)

case("conv2d: NCHW and channels-last, bias, groups, stride", function(dt, dev)
  miles.manual_seed(15)
  local x = input(dt, dev, 2, 4, 9, 8)
  local w, b = input(dt, dev, 6, 4, 3, 3), input(dt, dev, 6)
  local wg = input(dt, dev, 6, 2, 3, 3)
  local xc = channels_last(x:detach())
  local outs = { F.conv2d(x, w, b, { padding = 1 }), F.conv2d(xc, w, nil, { stride = 2 }),
                 F.conv2d(x, wg, nil, { groups = 2, padding = 1 }) }
  return outs, grads_of(F.conv2d(x, w, b, { padding = 1 }), dt, dev, x, w, b)
end)

case("batch norm: training and evaluation, residual and relu, channels-last", function(dt, dev)
  miles.manual_seed(16)
  local x = input(dt, dev, 4, 3, 5, 5)
  local r = input(dt, dev, 4, 3, 5, 5)
  -- parameters and statistics stay float32 for a bf16 input
  local pt = dt == "bfloat16" and "float32" or dt
  local w = miles.randn(3):to(pt):to(dev)
  w.requires_grad = true
  local b = miles.randn(3):to(pt):to(dev)
  b.requires_grad = true
  local rm, rv = miles.zeros(3, { dtype = pt }):to(dev), miles.ones(3, { dtype = pt }):to(dev)
  local y = F.batch_norm(x, rm, rv, w, b, true)
  local e = F.batch_norm(x, rm, rv, w, b, false)
  local f = F.batch_norm(channels_last(x:detach()), nil, nil, w, b, true, 0.1, 1e-5,
                         { residual = channels_last(r:detach()), relu = true })
  local outs = { y, e, f, rm, rv }
  local yy = F.batch_norm(x, nil, nil, w, b, true, 0.1, 1e-5, { residual = r, relu = true })
  return outs, grads_of(yy, dt, dev, x, w, b, r)
end, { outputs = { 4, 5 }, grads = { 2, 3 } })

case("pooling: max, average, adaptive average, channels-last", function(dt, dev)
  miles.manual_seed(17)
  local x = input(dt, dev, 2, 3, 9, 10)
  local xc = channels_last(x:detach())
  local outs = { F.max_pool2d(x, 3, { stride = 2, padding = 1 }), F.avg_pool2d(x, 2),
                 F.adaptive_avg_pool2d(x, { 1, 1 }), F.max_pool2d(xc, 2),
                 F.adaptive_avg_pool2d(xc, { 4, 3 }) }
  local y = F.max_pool2d(x, 3, { stride = 2, padding = 1 }) + F.avg_pool2d(x, 2):sum()
            + F.adaptive_avg_pool2d(x, { 4, 3 }):sum()
  return outs, grads_of(y, dt, dev, x)
end)

case("interpolation", function(dt, dev)
  miles.manual_seed(18)
  local x = input(dt, dev, 1, 2, 5, 6)
  return { F.interpolate(x, { size = { 7, 9 }, mode = "bilinear" }),
           F.interpolate(x, { scale_factor = 2, mode = "nearest" }) },
         grads_of(F.interpolate(x, { size = { 7, 9 }, mode = "bilinear" }), dt, dev, x)
end)

case("indexing: index_select, gather, cat, their gradients", function(dt, dev)
  miles.manual_seed(19)
  local x = input(dt, dev, 5, 4)
  local idx = miles.tensor({ 3, 1, 3, 5 }):to(dev)
  local gidx = miles.tensor({ { 1, 2 }, { 4, 4 }, { 2, 1 }, { 3, 3 }, { 1, 4 } }):to(dev)
  local outs = { x:index_select(1, idx), x:gather(2, gidx), miles.cat({ x, x * 2 }, 2) }
  return outs, grads_of(x:index_select(1, idx) + x:gather(2, gidx):sum(), dt, dev, x)
end)

-- The dtype of the bf16 run's result i, of dtype dt in the float32 run.
local function dtype16(dt, i, keep)
  for _, k in ipairs(keep) do
    if k == i then return dt end
  end
  return dt == "float32" and "bfloat16" or dt
end

local function scale_of(t)
  return miles.no_grad(function() return t:to("float64"):abs():max():item() end)
end

describe("bfloat16 kernels on the cpu", function()
  for _, c in ipairs(cases) do
    it(c.name .. ": the float32 kernel's results, rounded once", function()
      local o16, g16 = c.fn("bfloat16", "cpu")
      local o32, g32 = c.fn("float32", "cpu")
      assert.equal(#o32, #o16)
      for i = 1, #o32 do
        local dt = dtype16(o32[i]:dtype(), i, c.keep32.outputs)
        assert.equal(dt, o16[i]:dtype(), c.name .. ": output " .. i .. " dtype")
        H.assert_close(o16[i], o32[i]:detach():to(dt), 0, 0, c.name .. ": output " .. i)
      end
      assert.equal(#g32, #g16)
      for i = 1, #g32 do
        assert.equal(dtype16(g32[i]:dtype(), i, c.keep32.grads), g16[i]:dtype(),
          c.name .. ": gradient " .. i .. " dtype")
        H.assert_close(g16[i], g32[i], 2 ^ -7, 2 ^ -7 * scale_of(g32[i]),
          c.name .. ": gradient " .. i)
      end
    end)
  end
end)

describe("bfloat16 kernels on the GPU", function()
  for _, c in ipairs(cases) do
    -- cuDNN, cuBLAS and our reductions sum in other orders than the cpu: a sum
    -- rounded to bf16 may land one ulp (2^-8 relative) away.
    gpu_it(c.name .. ": the cpu's results within a bf16 rounding #gpu", function()
      local og, gg = c.fn("bfloat16", "cuda")
      local oc, gc = c.fn("bfloat16", "cpu")
      assert.equal(#oc, #og)
      assert.equal(#gc, #gg)
      for i = 1, #oc do
        assert.equal(oc[i]:dtype(), og[i]:dtype(), c.name .. ": output " .. i .. " dtype")
        H.assert_close(og[i]:cpu(), oc[i], 2 ^ -7, 2 ^ -7 * scale_of(oc[i]),
          c.name .. ": output " .. i)
      end
      for i = 1, #gc do
        assert.equal(gc[i]:dtype(), gg[i]:dtype(), c.name .. ": gradient " .. i .. " dtype")
        H.assert_close(gg[i]:cpu(), gc[i], 2 ^ -6, 2 ^ -6 * scale_of(gc[i]),
          c.name .. ": gradient " .. i)
      end
    end)
  end
end)

-- The ops of spec/fixtures/make_bf16_fixtures.py's cases: fn(inputs) -> output;
-- f32: the inputs that are float32 there (batch norm's parameters and statistics).
local torch_ops = {
  conv2d_pad1 = { fn = function(I) return F.conv2d(I[1], I[2], I[3], { padding = 1 }) end },
  conv2d_stride2 = { fn = function(I) return F.conv2d(I[1], I[2], nil, { stride = 2 }) end },
  linear = { fn = function(I) return F.linear(I[1], I[2], I[3]) end },
  matmul = { fn = function(I) return miles.matmul(I[1], I[2]) end },
  batch_norm_train = { f32 = { 2, 3, 4, 5 }, fn = function(I)
    return F.batch_norm(I[1], I[4], I[5], I[2], I[3], true, 0.1)
  end },
  batch_norm_eval = { f32 = { 2, 3, 4, 5 }, fn = function(I)
    return F.batch_norm(I[1], I[4], I[5], I[2], I[3], false)
  end },
  relu = { fn = function(I) return F.relu(I[1]) end },
  add = { fn = function(I) return I[1] + I[2] end },
  max_pool2d = { fn = function(I) return F.max_pool2d(I[1], 3, { stride = 2, padding = 1 }) end },
  avg_pool2d = { fn = function(I) return F.avg_pool2d(I[1], 2) end },
  adaptive_avg_pool2d = { fn = function(I) return F.adaptive_avg_pool2d(I[1], { 3, 2 }) end },
}

describe("bfloat16 ops against PyTorch (1.13, cpu, bf16)", function()
  local torch_cases = dofile(H.fixtures .. "bf16/cases.lua")
  -- PyTorch and miles both compute in float32 and round once; their sums run in
  -- other orders, so a result may land one bf16 ulp (2^-8 relative) away.
  local RTOL = 2 ^ -7
  for _, c in ipairs(torch_cases) do
    it(c.name, function()
      local op = torch_ops[c.op]
      local f32 = {}
      for _, i in ipairs(op.f32 or {}) do f32[i] = true end
      local function fx(suffix) return H.fixture("bf16/" .. c.name .. "_" .. suffix) end
      local I, grads = {}, {}
      for _, i in ipairs(c.grads) do grads[i] = true end
      for i = 1, c.inputs do
        I[i] = f32[i] and fx("in" .. i) or fx("in" .. i):bfloat16()
        I[i].requires_grad = grads[i] or false
      end
      local out = op.fn(I)
      assert.equal("bfloat16", out:dtype())
      local want = fx("out")
      H.assert_close(out, want, RTOL, RTOL * scale_of(want), c.name .. ": output")
      local loss = (out:float() * fx("r")):sum()
      loss:backward()
      for _, i in ipairs(c.grads) do
        assert.equal(f32[i] and "float32" or "bfloat16", I[i].grad:dtype())
        local g = fx("g" .. i)
        H.assert_close(I[i].grad, g, RTOL, RTOL * scale_of(g), c.name .. ": gradient " .. i)
      end
      for i = 1, c.stats do -- running statistics, updated in place (float32)
        local s = fx("st" .. i)
        H.assert_close(I[3 + i], s, 1e-6, 1e-6, c.name .. ": running statistic " .. i)
      end
    end)
  end
end)

describe("bfloat16 random numbers on the GPU", function()
  gpu_it("are the cpu's, bit for bit (uniform) #gpu", function()
    miles.manual_seed(8)
    local c = miles.rand(5000, { dtype = "bfloat16" })
    miles.manual_seed(8)
    local g = miles.rand(5000, { dtype = "bfloat16", device = "cuda" })
    assert.equal("bfloat16", g:dtype())
    H.assert_close(g:cpu(), c, 0, 0, "uniform")
    miles.manual_seed(9)
    local cn = miles.randn(5000, { dtype = "bfloat16" })
    miles.manual_seed(9)
    local gn = miles.randn(5000, { dtype = "bfloat16", device = "cuda" })
    H.assert_close(gn:cpu(), cn, 2 ^ -8, 0, "normal (CUDA's log and cos: a last bit may differ)")
  end)
end)

describe("bfloat16 and autograd", function()
  it("a float32 leaf cast to bf16 gets a float32 gradient; a bf16 leaf a bf16 one", function()
    local w = miles.randn(3, 4)
    w.requires_grad = true
    local b = miles.randn(4, 2):bfloat16()
    b.requires_grad = true
    local y = miles.matmul(w:bfloat16(), b)
    assert.equal("bfloat16", y:dtype())
    y:float():sum():backward()
    assert.equal("float32", w.grad:dtype())
    assert.equal("bfloat16", b.grad:dtype())
    -- d sum(W B) / dW = 1 B^T, rounded to bf16 once (in the matmul's backward)
    local want = miles.matmul(miles.ones(3, 2), b:detach():float():t()):bfloat16():float()
    H.assert_close(w.grad, want, 0, 0, "the weight's gradient")
  end)
end)

describe("bf16 autocast's casts", function()
  local function with_autocast(f) return miles.autocast(true, f) end

  it("runs conv2d, matmul and linear in bf16, softmax and the losses in float32", function()
    with_autocast(function()
      miles.manual_seed(20)
      local x = miles.randn(2, 3, 6, 6)
      local w = miles.randn(4, 3, 3, 3)
      w.requires_grad = true
      local lw, lb = miles.randn(5, 16), miles.randn(5)
      lw.requires_grad = true
      lb.requires_grad = true
      local y = F.conv2d(x, w, nil, { padding = 1 })
      assert.equal("bfloat16", y:dtype())
      local bn = miles.nn.BatchNorm2d(4)
      local z = F.relu(bn(y))
      assert.equal("bfloat16", z:dtype())
      assert.equal("float32", bn.running_mean:dtype())
      local p = F.adaptive_avg_pool2d(F.max_pool2d(z, 2), { 2, 2 }):flatten(2)
      assert.equal("bfloat16", p:dtype())
      local logits = F.linear(p, lw, lb)
      assert.equal("bfloat16", logits:dtype())
      assert.equal("bfloat16", miles.matmul(p, lw:t()):dtype())
      assert.equal("float32", F.softmax(logits, 2):dtype())
      assert.equal("float32", F.log_softmax(logits, 2):dtype())
      local loss = F.cross_entropy(logits, miles.tensor({ 1, 3 }))
      assert.equal("float32", loss:dtype())
      assert.equal("float32", F.binary_cross_entropy_with_logits(logits, miles.zeros(2, 5)):dtype())
      loss:backward()
      for _, t in ipairs({ w, lw, lb, bn.weight, bn.bias }) do
        assert.equal("float32", t.grad:dtype())
      end
    end)
  end)

  it("runs a function with the switch set, then sets it back, after an error too", function()
    assert.is_false(miles.autocast())
    local a, b = miles.autocast(true, function(x, y) return miles.autocast(), x + y end, 2, 3)
    assert.is_true(a)
    assert.equal(5, b)
    assert.is_false(miles.autocast())
    local ok, err = pcall(miles.autocast, true, function() error("inside") end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("inside", 1, true))
    assert.is_false(miles.autocast())
    assert.is_true(miles.autocast(true))
    assert.is_false(miles.autocast(false, function() return miles.autocast() end))
    assert.is_true(miles.autocast())
    miles.autocast(false)
    H.raises(function() miles.autocast(1, function() end) end, "boolean expected")
  end)

  it("leaves float64 alone and is undone when turned off", function()
    local a = miles.randn(3, 3):double()
    with_autocast(function()
      assert.equal("float64", miles.matmul(a, a):dtype())
      assert.equal("bfloat16", miles.matmul(a:float(), a:float()):dtype())
    end)
    assert.equal("float32", miles.matmul(a:float(), a:float()):dtype())
  end)
end)

describe("bfloat16 files and errors", function()
  it("goes through safetensors (BF16) bit for bit", function()
    local dir = H.tmpdir()
    finally(function() H.rmdir(dir) end)
    local t = miles.tensor({ 1.5, -2.25, 1 / 0, 3.140625 }):bfloat16()
    miles.save_safetensors(dir .. "/t.safetensors", { t = t })
    local back = miles.load_safetensors(dir .. "/t.safetensors")
    assert.equal("bfloat16", back.t:dtype())
    assert.same(t:totable(), back.t:totable())
  end)

  it("names what it cannot do: npy files, bf16 batch-norm parameters, optimizing bf16", function()
    local dir = H.tmpdir()
    finally(function() H.rmdir(dir) end)
    H.raises(function() miles.save(dir .. "/t.npy", miles.ones(2):bfloat16()) end,
      "NumPy has no bfloat16")
    local x = miles.randn(2, 3, 4, 4):bfloat16()
    H.raises(function() F.batch_norm(x, nil, nil, miles.ones(3):bfloat16(), nil, true) end,
      "batch_norm: weight is bfloat16 but the input is bfloat16 (whose parameters and statistics are float32)")
    local p = miles.randn(3):bfloat16()
    p.requires_grad = true
    H.raises(function() miles.optim.Adam({ p }, { lr = 0.1 }) end,
      "parameter 1 is bfloat16; only float32 and float64 tensors can be optimized")
    H.raises(function() F.conv2d(x, miles.randn(2, 3, 3, 3), nil) end,
      "conv2d: input is bfloat16 but weight is float32")
  end)
end)
