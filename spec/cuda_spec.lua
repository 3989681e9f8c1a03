-- The CUDA backend against the CPU (cunn's test.lua, llm.c's dev/cuda checks):
-- every parity case below builds its inputs on the CPU from a seed, runs on the
-- CPU and on the GPU, and compares outputs and gradients within a per-dtype
-- tolerance. Inputs are non-contiguous on purpose (transposed, narrowed,
-- expanded, channels-last). On a machine without a GPU each GPU case is reported
-- as pending (skipped), never as passed; what can be checked without one (error
-- messages, Module:to, that every case runs on the CPU) always runs.
local miles = require "miles"
local H = require "helpers"
local gpu_it = H.gpu_specs(it, describe, pending)
local nn, F = miles.nn, miles.F


-- Tolerances |gpu - cpu| <= atol + rtol * |cpu|: float64 differs only by the
-- order of sums; float32 by that and by cuDNN's algorithms (TF32 off).
local TOL = {
  float64 = { 1e-9, 1e-11 },
  float32 = { 2e-4, 2e-5 },
  conv32 = { 2e-3, 2e-4 },
  exact = { 0, 0 },
}

-- Random float tensor made on the cpu from the current seed, then moved.
local function randn(dev, shape, dt)
  return miles.randn(shape, { dtype = dt or "float32" }):to(dev)
end

local function leaf(t)
  t.requires_grad = true
  return t
end

-- Backward of sum(out * w) for a fixed random w, so every output element counts.
local function backward(out, dev)
  miles.manual_seed(99)
  local w = randn(dev, out:shape(), out:dtype())
  ;(out * w):sum():backward()
end

local function channels_last(t)
  return t:permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3)
end

-- Convolution geometries the cases run: plain, a strided 7x7 stem, dilated, grouped.
local CONV_GEOMS = {
  { cin = 3, cout = 8, k = 3, opts = { stride = 1, padding = 1 } },
  { cin = 1, cout = 4, k = 7, opts = { stride = 2, padding = 3 } },
  { cin = 4, cout = 6, k = 3, opts = { dilation = 2, padding = 2 } },
  { cin = 4, cout = 8, k = 3, opts = { groups = 2, stride = { 2, 1 } }, nobias = true },
}

-- Each case: name, tolerance key, fn(dev) -> list of tensors to compare.
local cases = {}
local function case(name, tol, fn) cases[#cases + 1] = { name = name, tol = tol, fn = fn } end

for _, dt in ipairs({ "float32", "float64" }) do
  case("unary ops " .. dt, dt, function(dev)
    miles.manual_seed(1)
    local x = randn(dev, { 33, 64 }, dt):t() -- transposed view
    local p = x:abs() + 0.1
    return { -x, x:abs(), x:exp(), p:log(), p:sqrt(), p:rsqrt(), (x + 3):reciprocal(), x:square(),
             x:relu(), x:sigmoid(), x:tanh(), x:sign(), x:softplus(), x:clamp(-0.5, 0.5), x ^ 3,
             p ^ 0.5 }
  end)

  case("binary ops with broadcasting " .. dt, dt, function(dev)
    miles.manual_seed(2)
    local a = randn(dev, { 8, 1, 5 }, dt)
    local b = randn(dev, { 5, 7 }, dt):t() -- [7, 5], strided
    local d = b:abs() + 0.5
    return { a + b, a - b, a * b, a / d, miles.maximum(a, b), miles.minimum(a, b), d ^ a,
             (a + b):narrow(2, 2, 3) * 2 }
  end)

  -- (a launch walks its output's memory order: operands laid out as it is run
  -- as one flat dim, the others by their strides in that order)
  case("elementwise ops, copies and fills over channels-last and permuted layouts " .. dt, dt,
    function(dev)
      miles.manual_seed(6)
      local a = channels_last(randn(dev, { 2, 5, 4, 3 }, dt))
      local c = channels_last(randn(dev, { 2, 5, 4, 3 }, dt))
      local bias = randn(dev, { 1, 5, 1, 1 }, dt)
      local p = randn(dev, { 3, 4, 5, 2 }, dt):permute(4, 3, 2, 1) -- strides reversed
      local into = channels_last(randn(dev, { 2, 5, 4, 3 }, dt))
      into:copy_(p)
      local filled = randn(dev, { 2, 5, 3, 4 }, dt):transpose(3, 4)
      filled:narrow(2, 2, 3):fill_(0.5)
      local d = channels_last(randn(dev, { 2, 5, 4, 3 }, dt)) -- written in place
      d:add_(bias)
      d:mul_(a)
      d:sub_(1.5)
      d:div_(p:abs() + 1)
      -- runs: 16 bytes at a time with a tail (1003 elements), or one at a time
      -- (narrowed by one element: not aligned for 16 bytes)
      local v = leaf(randn(dev, { 1003 }, dt))
      local w = v:narrow(1, 2, 1001)
      local r = (v * 3):relu() + w:sum()
      backward(r, dev)
      local h = v:to("bfloat16")
      return { a + bias, a * c, c - p, p / (a:abs() + 1), miles.where(a:gt(0), a, c),
               miles.where(p:gt(0), bias, p), a:contiguous(), p:contiguous(), into, filled,
               miles.maximum(bias, a), d, v:exp(), w:exp(), v * 2, w * 2, v + v, w + w, v:lt(w:sum()),
               r, v.grad, h:to(dt), w:to("bfloat16"):to(dt), (h + 1):to(dt), h:relu():to(dt) }
    end)

  case("reductions " .. dt, dt, function(dev)
    miles.manual_seed(3)
    local x = randn(dev, { 6, 7, 9 }, dt):permute(2, 1, 3)
    local mx, imx = x:max(2)
    local mn, imn = x:min(3, true)
    return { x:sum(), x:sum(1), x:sum(3, true), x:mean(2), x:prod(1), mx, imx, mn, imn,
             x:amax(3), x:argmax(1), x:logsumexp(2), x:var(3), x:std(1), x:var(2, false) }
  end)

  case("softmax and log_softmax, forward and backward " .. dt, dt, function(dev)
    miles.manual_seed(4)
    local x = leaf(randn(dev, { 4, 10, 3 }, dt))
    local a, b = F.softmax(x, 2), F.log_softmax(x, 3)
    backward(a + b:sum(3, true), dev)
    return { a, b, x.grad }
  end)

  case("matmul, bmm and linear with gradients " .. dt, dt, function(dev)
    miles.manual_seed(5)
    local a = leaf(randn(dev, { 33, 17 }, dt))
    local b = leaf(randn(dev, { 40, 33 }, dt))
    local c = miles.matmul(a:t(), b:t()) -- both transposed
    local p = leaf(randn(dev, { 3, 5, 6 }, dt))
    local q = leaf(randn(dev, { 3, 6, 4 }, dt))
    local r = miles.bmm(p, q)
    local w, bias = leaf(randn(dev, { 8, 6 }, dt)), leaf(randn(dev, { 8 }, dt))
    local y = F.linear(p, w, bias)
    backward(c, dev)
    backward(r, dev)
    backward(y, dev)
    return { c, r, y, a.grad, b.grad, p.grad, q.grad, w.grad, bias.grad }
  end)

  case("conv2d forward and backward " .. dt, dt == "float32" and "conv32" or dt, function(dev)
    local outs = {}
    local geoms = CONV_GEOMS
    for i, g in ipairs(geoms) do
      miles.manual_seed(10 + i)
      local x = leaf(randn(dev, { 2, g.cin, 11, 13 }, dt))
      local w = leaf(randn(dev, { g.cout, g.cin / (g.opts.groups or 1), g.k, g.k }, dt) * 0.2)
      local b = not g.nobias and leaf(randn(dev, { g.cout }, dt)) or nil
      local y = F.conv2d(x, w, b, g.opts)
      backward(y, dev)
      for _, t in ipairs({ y, x.grad, w.grad, b and b.grad or nil }) do outs[#outs + 1] = t end
    end
    return outs
  end)

  case("batch_norm train and eval, forward and backward " .. dt, dt, function(dev)
    miles.manual_seed(6)
    local x = leaf(randn(dev, { 4, 5, 6, 7 }, dt))
    local w, b = leaf(randn(dev, { 5 }, dt)), leaf(randn(dev, { 5 }, dt))
    local rm, rv = miles.zeros(5, { dtype = dt }):to(dev), miles.ones(5, { dtype = dt }):to(dev)
    local y = F.batch_norm(x, rm, rv, w, b, true, 0.1, 1e-5)
    local z = F.batch_norm(x, rm, rv, w, b, false, 0.1, 1e-5)
    backward(y + z, dev)
    return { y, z, rm, rv, x.grad, w.grad, b.grad }
  end)

  case("pooling forward and backward " .. dt, dt, function(dev)
    miles.manual_seed(7)
    local x = leaf(randn(dev, { 2, 3, 11, 10 }, dt))
    local a = F.max_pool2d(x, 3, 2, 1, 1, true)
    local b = F.avg_pool2d(x, { 3, 2 }, 2, { 1, 0 }, true, false)
    local c = F.adaptive_avg_pool2d(x, { 4, 3 })
    backward(a, dev)
    backward(b, dev)
    backward(c, dev)
    return { a, b, c, x.grad }
  end)

  case("interpolate forward and backward " .. dt, dt, function(dev)
    miles.manual_seed(8)
    local x = leaf(randn(dev, { 2, 3, 5, 7 }, dt))
    local a = F.interpolate(x, { size = { 9, 4 }, mode = "bilinear", align_corners = false })
    local b = F.interpolate(x, { size = { 9, 4 }, mode = "bilinear", align_corners = true })
    local c = F.interpolate(x, { scale_factor = 2.5, mode = "nearest" })
    backward(a, dev)
    backward(b, dev)
    backward(c, dev)
    return { a, b, c, x.grad }
  end)

  case("losses with gradients " .. dt, dt, function(dev)
    miles.manual_seed(9)
    local x = leaf(randn(dev, { 16, 5 }, dt))
    local y = miles.randint(1, 6, { 16 }):to(dev)
    local wt = (miles.rand(5, { dtype = dt }) + 0.5):to(dev)
    local t = miles.rand({ 16, 5 }, { dtype = dt }):to(dev)
    local l1 = F.cross_entropy(x, y)
    local l2 = F.cross_entropy(x, y, { weight = wt, label_smoothing = 0.1 })
    local l3 = F.nll_loss(F.log_softmax(x, 2), y, { reduction = "sum" })
    local l4 = F.binary_cross_entropy_with_logits(x, t, { pos_weight = wt })
    local l5 = F.mse_loss(x, t)
    ;(l1 + l2 + l3 + l4 + l5):backward()
    return { l1, l2, l3, l4, l5, x.grad }
  end)
end

case("channels-last float32: conv, batch norm, pooling", "conv32", function(dev)
  miles.manual_seed(20)
  local x = leaf(channels_last(randn(dev, { 2, 4, 9, 9 })))
  local w = leaf(randn(dev, { 6, 4, 3, 3 }) * 0.2)
  local y = F.conv2d(x, w, nil, { padding = 1 })
  local rm, rv = miles.zeros(6):to(dev), miles.ones(6):to(dev)
  local z = F.batch_norm(y, rm, rv, nil, nil, true)
  local p = F.max_pool2d(z:relu(), 2)
  backward(p, dev)
  return { y, z, p, rm, rv, x.grad, w.grad }
end)

case("int64 and bool ops, dtype conversions", "exact", function(dev)
  miles.manual_seed(21)
  local a = miles.randint(-50, 50, { 6, 7 }):to(dev)
  local b = miles.randint(1, 9, { 7 }):to(dev)
  local f = randn(dev, { 6, 7 })
  local m = f:gt(0)
  return { a + b, a * b, a - b, miles.maximum(a, b), a:eq(b), miles.logical_and(m, a:gt(0)),
           miles.where(m, a, b), f:to("int64"), m:to("float32"), a:to("uint8"), a:to("bool"),
           a:sum(), a:max() }
end)

case("gather, index_select, cat and their gradients", "float64", function(dev)
  miles.manual_seed(22)
  local x = leaf(randn(dev, { 5, 6 }, "float64"))
  local idx = miles.tensor({ 3, 1, 3, 5 }):to(dev)
  local gi = miles.tensor({ { 1, 6 }, { 2, 2 }, { 3, 1 }, { 6, 5 }, { 4, 4 } }):to(dev)
  local a = miles.index_select(x, 1, idx)
  local b = miles.gather(x, 2, gi)
  local c = miles.cat({ x, x * 2 }, 2)
  backward(a, dev)
  backward(b, dev)
  backward(c, dev)
  return { a, b, c, x.grad }
end)

case("dropout draws the cpu's mask", "exact", function(dev)
  local x = miles.ones(64, 33):to(dev)
  miles.manual_seed(23)
  local y = F.dropout(x, 0.3)
  miles.manual_seed(23)
  local z = F.dropout(x:to("float64"), 0.5)
  return { y, z }
end)

-- Sizes that take the kernels' other paths: rows reduced by a warp (9..1024 long)
-- or a block (longer; 1024 threads when there are few rows), columns reduced in
-- tiles (a dim before others), softmax rows the same ways, and batch-norm
-- statistics summed in several chunks of planes or of channels-last rows.
case("long rows, columns and large batch-norm planes (float32)", "float32", function(dev)
  miles.manual_seed(8)
  local outs = {}
  for _, shape in ipairs({ { 3, 5000 }, { 300, 1500 }, { 40, 700 }, { 6, 2000, 40 } }) do
    local x = leaf(randn(dev, shape))
    local d = 2 -- in the 3-D shape, a dim before others: columns
    local mx, imx = x:max(d)
    local sm = F.softmax(x, d)
    backward(sm * x + F.log_softmax(x, d), dev)
    for _, t in ipairs({ x:sum(d), mx, imx, x:logsumexp(d), x:var(d), sm, x.grad }) do
      outs[#outs + 1] = t
    end
  end
  local x = leaf(randn(dev, { 2, 3, 150, 130 })) -- 19500 positions per plane: 2 chunks
  local w, b = leaf(randn(dev, { 3 })), leaf(randn(dev, { 3 }))
  local xl = leaf(channels_last(randn(dev, { 8, 40, 48, 48 }))) -- rows, several chunks
  local wl, bl = leaf(randn(dev, { 40 })), leaf(randn(dev, { 40 }))
  local y = F.batch_norm(x, nil, nil, w, b, true, 0.1, 1e-5)
  local yl = F.batch_norm(xl, nil, nil, wl, bl, true, 0.1, 1e-5)
  backward(y, dev)
  backward(yl, dev)
  for _, t in ipairs({ y, x.grad, w.grad, b.grad, yl, xl.grad, wl.grad, bl.grad }) do
    outs[#outs + 1] = t
  end
  return outs
end)

-- One training step of a small seeded ResNet-10 on dev: its net, logits and loss.
local function resnet_step(dev)
  miles.manual_seed(24)
  local net = miles.models.resnet.resnet10({ in_channels = 3, num_classes = 5, stem = "small",
                                            widths = { 8, 16, 16, 32 } })
  net:to(dev)
  miles.manual_seed(25)
  local x = randn(dev, { 4, 3, 16, 16 })
  local y = miles.randint(1, 6, { 4 }):to(dev)
  local logits = net(x)
  local loss = F.cross_entropy(logits, y)
  loss:backward()
  return net, logits, loss
end

case("a ResNet-10 training step (forward, backward, batch-norm statistics)", "conv32", function(dev)
  local net, logits = resnet_step(dev)
  local outs = { logits }
  for _, p in ipairs(net:parameters()) do outs[#outs + 1] = p.grad end
  for _, b in ipairs(net:buffers()) do outs[#outs + 1] = b end
  return outs
end)

for _, algo in ipairs({ "Adam", "AdamW", "SGD" }) do
  case(algo .. ": five steps over a group of tensors", "float32", function(dev)
    miles.manual_seed(30)
    local ps = { leaf(randn(dev, { 7, 3 })), leaf(randn(dev, { 5 })), leaf(randn(dev, { 2, 2, 3 })) }
    local opts = algo == "SGD" and { lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 0.01 }
                 or { lr = 0.01, weight_decay = 0.01 }
    local opt = miles.optim[algo]({ { name = "g", params = ps } }, opts)
    for step = 1, 5 do
      miles.manual_seed(100 + step)
      for _, p in ipairs(ps) do p.grad = randn(dev, p:shape()) end
      opt:step()
    end
    return ps
  end)
end

-- Run a case on dev with the default dtype and TF32 off (parity, not speed).
local function run(c, dev)
  local tf32 = miles.cuda.allow_tf32()
  miles.cuda.allow_tf32(false)
  local ok, outs = pcall(c.fn, dev)
  miles.cuda.allow_tf32(tf32)
  if not ok then error(c.name .. " on " .. dev .. ": " .. tostring(outs), 0) end
  return outs
end

-- The GPU's results against the cpu's: same count, on cuda:0, same dtypes, each
-- within rtol and atol_of(the cpu result).
local function assert_results(name, want, got, rtol, atol_of)
  assert.equal(#want, #got, name .. ": number of results")
  for i = 1, #want do
    assert.equal("cuda:0", got[i]:device(), name .. ": result " .. i .. " device")
    assert.equal(want[i]:dtype(), got[i]:dtype(), name .. ": result " .. i .. " dtype")
    H.assert_close(got[i]:cpu(), want[i], rtol, atol_of(want[i]), name .. ": result " .. i)
  end
end

describe("cuda parity with the cpu", function()
  it("every parity case runs on the cpu", function()
    for _, c in ipairs(cases) do
      local outs = run(c, "cpu")
      assert.is_true(#outs > 0, c.name)
      for i, t in ipairs(outs) do
        assert.is_true(miles.is_tensor(t), c.name .. ": result " .. i .. " is not a tensor")
        assert.equal("cpu", t:device())
      end
    end
  end)

  for _, c in ipairs(cases) do
    gpu_it(c.name .. " #gpu", function()
      local rtol, atol = TOL[c.tol][1], TOL[c.tol][2]
      assert_results(c.name, run(c, "cpu"), run(c, "cuda"), rtol, function() return atol end)
    end)
  end
end)

-- bf16 autocast (miles.autocast): float32 convolutions and matmuls run in
-- bfloat16 (their inputs rounded to bf16, float32 accumulation, bf16 outputs),
-- and what follows them (batch norm, relu, pooling, additions) in bf16 too, as
-- PyTorch's AMP. These cases run with it on and are compared with the cpu's
-- float32 results. How close they can be was measured by emulating autocast in
-- PyTorch on a cpu (the inputs of every convolution and matmul, forward and
-- backward, rounded to bf16, and the convolutions' outputs too; sums in float64)
-- over these cases with 40 to 60 seeds:
-- * Single ops, and a network's forward outputs, elementwise: |got - cpu| <=
--   AMP_TOL * (max|cpu| + |cpu|), AMP_TOL = 3e-2. bf16 keeps 8 significant bits
--   (a rounding error up to 2^-9 per value); that left at most 0.6% (conv) and
--   0.7% (matmul) of max|cpu|, and 0.54 of this tolerance for the ResNet's
--   logits and batch-norm statistics. A wrong layout, operand or conversion is
--   off by about 100%.
-- * Gradients through ReLUs, by direction and normwise: under bf16 a unit within
--   rounding error of 0 switches on or off, and its gradient with it, so each
--   ReLU layer adds an error of about sqrt(the fraction switched). The
--   ResNet-10's parameter gradients differed by 16% of their norm (median), up
--   to 106% for a tensor of 8 batch-norm biases, whose direction still held
--   (cosine 0.73 with the cpu's at worst). Checked: each gradient's cosine with
--   the cpu's at least AMP_GRAD_COS (a wrong gradient's is about 0, a negated
--   one's -1), and the mean of their normwise errors at most AMP_GRAD_MEAN (the
--   worst seed's was 0.28).
local AMP_TOL, AMP_GRAD_COS, AMP_GRAD_MEAN = 3e-2, 0.5, 0.35

-- Each case: fn(dev) -> list of tensors compared elementwise, with a field grads:
-- a list compared normwise (or nil).
local amp_cases = {}
local function amp_case(name, fn) amp_cases[#amp_cases + 1] = { name = name, fn = fn } end

amp_case("conv2d forward and backward, NCHW and channels-last inputs", function(dev)
  local outs = {}
  local geoms = { table.unpack(CONV_GEOMS) }
  for _, g in ipairs({ -- wider ones, where tensor cores engage, and a 1x1 stride 2
    { cin = 16, cout = 32, k = 3, opts = { padding = 1 } },
    { cin = 16, cout = 8, k = 1, opts = { stride = 2 }, nobias = true },
  }) do geoms[#geoms + 1] = g end
  for _, cl in ipairs({ false, true }) do
    for i, g in ipairs(geoms) do
      miles.manual_seed(60 + i)
      local x = randn(dev, { 2, g.cin, 11, 13 })
      x = leaf(cl and channels_last(x) or x)
      local w = leaf(randn(dev, { g.cout, g.cin / (g.opts.groups or 1), g.k, g.k }) * 0.2)
      local b = not g.nobias and leaf(randn(dev, { g.cout })) or nil
      local y = F.conv2d(x, w, b, g.opts)
      backward(y, dev)
      for _, t in ipairs({ y, x.grad, w.grad, b and b.grad or nil }) do outs[#outs + 1] = t end
    end
  end
  return outs
end)

amp_case("matmul, bmm and linear with gradients", function(dev)
  miles.manual_seed(70)
  local a = leaf(randn(dev, { 33, 17 }))
  local b = leaf(randn(dev, { 40, 33 }))
  local c = miles.matmul(a:t(), b:t()) -- both transposed
  local p = leaf(randn(dev, { 3, 5, 6 }))
  local q = leaf(randn(dev, { 3, 6, 4 }))
  local r = miles.bmm(p, q)
  local m = leaf(randn(dev, { 5, 7 }))
  local s = miles.matmul(p:transpose(2, 3), m) -- transposed batches times one matrix (stride 0)
  local w, bias = leaf(randn(dev, { 8, 6 })), leaf(randn(dev, { 8 }))
  local y = F.linear(p, w, bias) -- the batch folded into the rows
  local u = leaf(randn(dev, { 64, 300 }))
  local v = leaf(randn(dev, { 300, 48 }))
  local z = miles.matmul(u:narrow(2, 3, 256), v:narrow(1, 5, 256)) -- k = 256, rows with gaps
  for _, out in ipairs({ c, r, s, y, z }) do backward(out, dev) end
  return { c, r, s, y, z, a.grad, b.grad, p.grad, q.grad, m.grad, w.grad, bias.grad, u.grad,
           v.grad }
end)

amp_case("a ResNet-10 training step (forward, backward, batch-norm statistics)", function(dev)
  local net, logits, loss = resnet_step(dev)
  local outs = { logits, loss, grads = {} }
  for _, b in ipairs(net:buffers()) do outs[#outs + 1] = b end
  for _, p in ipairs(net:parameters()) do outs.grads[#outs.grads + 1] = p.grad end
  return outs
end)

-- Run a case on dev as run does, with bf16 autocast on.
local function run_autocast(c, dev)
  return miles.autocast(true, run, c, dev)
end

local function max_abs(t)
  return miles.no_grad(function() return t:to("float64"):abs():max():item() end)
end

-- ||got - want|| / ||want|| and the cosine of the angle between got and want
-- (NaN when either is all zeros).
local function compare_normwise(got, want)
  return miles.no_grad(function()
    local g, w = got:cpu():to("float64"), want:to("float64")
    local d = g - w
    local gg, ww = (g * g):sum():item(), (w * w):sum():item()
    return math.sqrt((d * d):sum():item() / ww), (g * w):sum():item() / math.sqrt(gg * ww)
  end)
end

-- A case's results under autocast (got, on dev) against the cpu's float32 ones
-- (want): the dtypes of `dtypes` when given (the cpu's results under autocast;
-- which ops give which is spec/bf16_spec.lua's), the values within the AMP
-- tolerances above.
local function assert_amp(c, want, got, dev, dtypes)
  assert.equal(#want, #got, c.name .. ": number of results")
  for i = 1, #want do
    assert.equal(dev, got[i]:device(), c.name .. ": result " .. i .. " device")
    if dtypes then
      assert.equal(dtypes[i]:dtype(), got[i]:dtype(), c.name .. ": result " .. i .. " dtype")
    end
    H.assert_close(got[i]:cpu():float(), want[i], AMP_TOL, AMP_TOL * max_abs(want[i]),
      c.name .. ": result " .. i)
  end
  if not want.grads then return end
  assert.equal(#want.grads, #got.grads, c.name .. ": number of gradients")
  local sum = 0
  for i, g in ipairs(want.grads) do
    assert.equal(g:dtype(), got.grads[i]:dtype(), c.name .. ": gradient " .. i .. " dtype")
    local e, cos = compare_normwise(got.grads[i], g)
    assert.is_true(cos >= AMP_GRAD_COS, string.format(
      "%s: gradient %d has a cosine of %.3g with the cpu's (at least %g; it differs by %.3g "
      .. "of its norm)", c.name, i, cos, AMP_GRAD_COS, e))
    sum = sum + e
  end
  local mean = sum / #want.grads
  assert.is_true(mean <= AMP_GRAD_MEAN, string.format(
    "%s: the gradients differ by %.3g of their norms on average (at most %g)", c.name, mean,
    AMP_GRAD_MEAN))
end

-- matmul and conv2d on dev with autocast on and off, against the cpu's float32:
-- on, they err by a bf16 rounding of their inputs; off, by float32's.
local function check_switch(dev)
  local was, tf32 = miles.autocast(), miles.cuda.allow_tf32()
  finally(function()
    miles.autocast(was)
    miles.cuda.allow_tf32(tf32)
  end)
  miles.cuda.allow_tf32(false)
  miles.manual_seed(71)
  local a, b = miles.randn(256, 256), miles.randn(256, 256)
  local x, w = miles.randn(4, 64, 12, 12), miles.randn(64, 64, 3, 3) * 0.05
  local ops = {
    { "matmul", function(d) return miles.matmul(a:to(d), b:to(d)) end },
    { "conv2d", function(d) return F.conv2d(x:to(d), w:to(d), nil, { padding = 1 }) end },
  }
  for _, op in ipairs(ops) do
    local name, f = op[1], op[2]
    local want = f("cpu")
    local scale = max_abs(want)
    assert.is_true(miles.autocast(true))
    local y = f(dev)
    assert.equal("bfloat16", y:dtype())
    local on = H.max_abs_diff(y:cpu():float(), want)
    assert.is_false(miles.autocast(false))
    local off = H.max_abs_diff(f(dev):cpu(), want)
    -- bf16 inputs (and output) err by 2.3e-3 to 5e-3 of the scale (both ops),
    -- TF32 by ~3e-4, float32 by ~6e-7
    assert.is_true(on > 1e-3 * scale and on < 1.5e-2 * scale,
      string.format("%s with autocast: max |diff| %.3g for a scale of %.3g", name, on, scale))
    assert.is_true(off < 5e-4 * scale,
      string.format("%s without autocast: max |diff| %.3g for a scale of %.3g", name, off, scale))
  end
end

describe("bf16 autocast", function()
  it("is off by default, and a switch", function()
    assert.is_false(miles.autocast())
    finally(function() miles.autocast(false) end)
    assert.is_true(miles.autocast(true))
    assert.is_true(miles.autocast())
    assert.is_false(miles.autocast(false))
  end)

  it("is a switch that rounds float32 matmuls and convolutions to bf16 on the cpu", function()
    check_switch("cpu")
  end)

  gpu_it("is a switch that rounds float32 matmuls and convolutions to bf16 #gpu", function()
    check_switch("cuda")
  end)

  for _, c in ipairs(amp_cases) do
    it(c.name .. " under autocast on the cpu", function()
      assert_amp(c, run(c, "cpu"), run_autocast(c, "cpu"), "cpu")
    end)
    gpu_it(c.name .. " under autocast #gpu", function()
      assert_amp(c, run(c, "cpu"), run_autocast(c, "cuda"), "cuda:0", run_autocast(c, "cpu"))
    end)
  end

  gpu_it("leaves float64 matmuls and convolutions as they are #gpu", function()
    for _, c in ipairs(cases) do
      if c.name == "matmul, bmm and linear with gradients float64"
        or c.name == "conv2d forward and backward float64" then
        local want, got = run(c, "cpu"), run_autocast(c, "cuda")
        for i = 1, #want do
          assert.equal("float64", got[i]:dtype())
          H.assert_close(got[i]:cpu(), want[i], TOL.float64[1], TOL.float64[2],
            c.name .. " under autocast: result " .. i)
        end
      end
    end
  end)
end)

describe("cuda runtime", function()
  gpu_it("moves tensors both ways, keeping values, dtypes and layouts #gpu", function()
    miles.manual_seed(40)
    local x = miles.randn(3, 4, 5, 6)
    local cl = channels_last(x)
    for _, t in ipairs({ x, cl, x:to("float64"), x:gt(0), x:to("int64"), x:narrow(2, 2, 2) }) do
      local g = t:cuda()
      assert.equal("cuda:0", g:device())
      assert.equal(t:dtype(), g:dtype())
      H.assert_close(g:cpu(), t, 0, 0, "round trip")
    end
    assert.same(cl:stride(), cl:cuda():stride())
    local y = miles.zeros(4, 5):cuda()
    y:narrow(2, 2, 3):copy_(miles.ones(4, 3)) -- host into a strided device view
    assert.equal(12, y:sum():item())
    y:copy_(miles.tensor({ 1, 2, 3, 4, 5 })) -- a host row broadcast over the rows
    assert.equal(60, y:sum():item())
    y:copy_(miles.ones(5):cuda():narrow(1, 2, 1)) -- a device scalar view
    assert.equal(20, y:sum():item())
  end)

  gpu_it("gradients flow back across a device move #gpu", function()
    local x = leaf(miles.randn(4, 3))
    local y = (x:cuda() * 2):sum()
    y:backward()
    assert.equal("cpu", x.grad:device())
    H.assert_close(x.grad, miles.full({ 4, 3 }, 2), 0, 0)
  end)

  gpu_it("an index out of range is reported at the next synchronisation #gpu", function()
    local x = miles.randn(3, 4):cuda()
    local bad = miles.tensor({ 1, 7 }):cuda()
    local y = miles.index_select(x, 1, bad)
    H.raises(function() miles.cuda.synchronize() end, "out of range")
    miles.cuda.synchronize() -- the flag was cleared
    y = nil
  end)

  gpu_it("asking for more memory than the GPU has is a clear error #gpu", function()
    H.raises(function() miles.zeros(1 << 40, { device = "cuda" }) end, "out of memory on cuda:0",
      "asked for 4.0 TiB")
    local x = miles.ones(1000, { device = "cuda" }) -- still usable afterwards
    assert.equal(1000, x:sum():item())
  end)

  gpu_it("a steady training loop makes no new device allocation and no host wait #gpu", function()
    miles.manual_seed(41)
    local net = nn.Sequential(nn.Conv2d(1, 8, 3, { padding = 1 }), nn.BatchNorm2d(8), nn.ReLU(),
      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)):cuda()
    local opt = miles.optim.Adam(net:parameters(), { lr = 1e-3 })
    local x, y = miles.randn(16, 1, 12, 12):cuda(), miles.randint(1, 5, { 16 }):cuda()
    local function step()
      opt:zero_grad()
      F.cross_entropy(net(x), y):backward()
      opt:step()
      collectgarbage()
      collectgarbage()
    end
    for _ = 1, 3 do step() end
    local before, waits = miles.cuda.memory_stats().allocations, miles.cuda.host_waits()
    for _ = 1, 10 do step() end
    assert.equal(before, miles.cuda.memory_stats().allocations)
    assert.equal(waits, miles.cuda.host_waits())
    F.cross_entropy(net(x), y):item() -- reading a value is a wait
    assert.equal(waits + 1, miles.cuda.host_waits())
  end)

  gpu_it("TF32 is a switch, and float32 matmuls with it stay close #gpu", function()
    local was = miles.cuda.allow_tf32()
    finally(function() miles.cuda.allow_tf32(was) end)
    assert.is_false(miles.cuda.allow_tf32(false))
    assert.is_true(miles.cuda.allow_tf32(true))
    miles.manual_seed(42)
    local a, b = miles.randn(256, 256), miles.randn(256, 256)
    H.assert_close(miles.matmul(a:cuda(), b:cuda()):cpu(), miles.matmul(a, b), 1e-2, 5e-2, "tf32")
  end)

  gpu_it("pinned loader batches go to the GPU without staging, and their memory is reused #gpu", function()
    miles.manual_seed(42)
    local ds = miles.data.Dataset({ modalities = { a = miles.randn(300, 3, 8, 8) },
                                    labels = miles.randint(1, 5, { 300 }) })
    local loader = ds:loader("all", { batch_size = 32, shuffle = true, workers = 2, pin_memory = true })
    for e = 1, 6 do
      for batch in loader:epoch(e) do
        assert.is_true(batch.a:is_pinned())
        local g = batch.a:cuda()
        local y = batch.y:cuda()
        assert.equal(0, H.max_abs_diff(g:cpu(), batch.a))
        assert.same(batch.y:totable(), y:cpu():totable())
      end
      collectgarbage()
    end
  end)

  gpu_it("the trainer runs on the GPU with the cpu's numbers #gpu", function()
    local experiment = require "miles.experiment"
    local function run_on(device)
      local t = experiment.trainer({ dataset = "toy", rule = "miles", epochs = 2, quiet = true,
                                     device = device })
      t:fit()
      return t.history
    end
    local cpu, gpu = run_on("cpu"), run_on("cuda")
    for e = 1, 2 do
      assert.near(cpu[e].train_loss, gpu[e].train_loss, 1e-3 * math.abs(cpu[e].train_loss))
    end
  end)

  gpu_it("the trainer's host waits do not grow with the batches of an epoch #gpu", function()
    local experiment = require "miles.experiment"
    local function waits(batch_size)
      local t = experiment.trainer({ dataset = "toy", rule = "miles", epochs = 1, quiet = true,
                                     device = "cuda", batch_size = batch_size })
      local before = miles.cuda.host_waits()
      t:fit()
      return miles.cuda.host_waits() - before
    end
    local small, large = waits(16), waits(32) -- (44 and 22 training batches)
    -- (the emulated GPU is never ahead of the host, so every possible wait counts
    -- there; a real GPU may have finished some work, so allow a little less)
    if H.cuda_emulated then assert.equal(small, large) else assert.is_true(math.abs(small - large) <= 4) end
    assert.is_true(small < 30, "waits per epoch: " .. small)
  end)
end)

-- The output of a Lua script run by miles in a child process, with environment
-- settings ("NAME=value ...").
local function run_child(env, script)
  local path = os.tmpname()
  H.write_file(path, script)
  local p = io.popen(("%s %s %s 2>&1"):format(env, H.miles_bin(), path))
  local out = p:read("a")
  p:close()
  os.remove(path)
  return out
end

-- The start of the child scripts below: record(dt, got, want) keeps the largest
-- difference (relative to the largest value) between GPU and CPU tensors, apart
-- for bfloat16; report() prints "worst <e> worst16 <e> plans <n>" (cuDNN plans).
local CASES_PRELUDE = [[
  local miles = require "miles"
  local F = miles.F
  local worst, worst16 = 0, 0
  local function record(dt, got, want)
    for i = 1, #want do
      local scale = math.max(1, want[i]:abs():max():item())
      local e = (got[i] - want[i]):abs():max():item() / scale
      if dt == "bfloat16" then worst16 = math.max(worst16, e) else worst = math.max(worst, e) end
    end
  end
  local function report()
    print(("worst %g worst16 %g plans %d"):format(worst, worst16, miles.cuda.memory_stats().cudnn_plans))
  end
]]

-- run_cases(script, env): CASES_PRELUDE .. script in a child with env, its worst
-- differences checked (float32/float64 within 1e-5, bfloat16 within 2^-7: a sum
-- may round one bf16 ulp, 2^-8, apart); its output and the count of cuDNN plans.
local function run_cases(script, env)
  local out = run_child(env, CASES_PRELUDE .. script)
  local worst, worst16, plans = out:match("worst (%S+) worst16 (%S+) plans (%d+)")
  assert.is_not_nil(worst, out)
  assert.is_true(tonumber(worst) < 1e-5, out)
  assert.is_true(tonumber(worst16) < 2 ^ -7, out)
  return out, plans
end

-- Convolutions with padding, strides, dilation, groups, a 1x1 kernel, a fused
-- relu, in float32, float64 and bfloat16, NCHW and channels-last inputs: y and
-- the gradients of x, w, b.
local CONV_CASES = [[
  miles.cuda.allow_tf32(false)
  local cases = {
    { x = { 2, 4, 9, 8 }, w = { 6, 4, 3, 3 }, o = { padding = 1 } },
    { x = { 3, 6, 11, 10 }, w = { 4, 3, 3, 2 },
      o = { stride = { 2, 1 }, padding = { 1, 0 }, dilation = { 2, 1 }, groups = 2 } },
    { x = { 2, 3, 7, 7 }, w = { 5, 3, 1, 1 }, o = { stride = 2 } },
    { x = { 2, 4, 6, 7 }, w = { 5, 4, 3, 3 }, o = { padding = 1, relu = true } },
  }
  for ci, c in ipairs(cases) do
    for _, dt in ipairs({ "float32", "float64", "bfloat16" }) do
      for _, channels_last in ipairs({ false, true }) do
        miles.manual_seed(ci)
        local x = miles.randn(table.unpack(c.x)):to(dt)
        if channels_last then x = x:permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3) end
        local w, b = miles.randn(table.unpack(c.w)):to(dt), miles.randn(c.w[1]):to(dt)
        local function run(dev)
          local l = { x:clone():to(dev), w:clone():to(dev), b:clone():to(dev) }
          for _, t in ipairs(l) do t.requires_grad = true end
          local y = F.conv2d(l[1], l[2], l[3], c.o)
          miles.manual_seed(99)
          local g = miles.randn(table.unpack(y:shape())):to(dt):to(dev)
          ;(y * g):sum():backward()
          return { y:cpu(), l[1].grad:cpu(), l[2].grad:cpu(), l[3].grad:cpu() }
        end
        record(dt, run("cuda"), run("cpu"))
      end
    end
  end
  report()
]]

-- The fallbacks of csrc/cuda/cudnn_conv.c when no engine takes a problem: the bias
-- added by a kernel when none fuses it, NCHW when none takes channels-last,
-- im2col + cuBLAS when none takes it at all. The emulated GPU's fake cuDNN can
-- refuse each (MILES_FAKE_CUDNN_REFUSE), in a child process; a real cuDNN decides
-- for itself, but MILES_CONV_GEMM=1 makes every convolution take the last one.
local function run_conv_cases(env) return run_cases(CONV_CASES, env) end

-- What a piece of work asks of the emulated GPU, from its trace (MILES_FAKE_TRACE,
-- summed by tools/emu-trace.pl): segment k of the child's trace (the stretches
-- between its waits for the stream).
local function traced(script, k)
  local trace = os.tmpname()
  local out = run_child("MILES_FAKE_TRACE=" .. trace, "local miles = require 'miles'\n" .. script)
  local p = io.popen(("tools/emu-trace.pl %s %s %d 2>&1"):format(H.miles_bin(), trace, k))
  local summary = p:read("a")
  p:close()
  os.remove(trace)
  return summary, out
end

describe("the emulated GPU's trace", function()
  ;(H.cuda_emulated and it or pending)("names and counts the kernels, library calls and copies of a stretch #emulated-gpu", function()
    local summary, out = traced([[
      local x = miles.randn(2, 3, 8, 8):cuda()
      local y = miles.F.conv2d(x, miles.randn(4, 3, 3, 3):cuda())
      miles.cuda.synchronize()
      y = (y * 2):relu()
      miles.cuda.synchronize()
    ]], 2)
    assert.truthy(summary:find("unary_kernel<", 1, true), summary .. out)
    assert.truthy(summary:find("binary_run_kernel<", 1, true), summary)
    assert.falsy(summary:find("cudnn", 1, true), summary) -- (the convolution's is in stretch 1)
    assert.truthy(summary:find("%d+ kernel launches, %d+ other operations"), summary)
  end)

  ;(H.cuda_emulated and it or pending)("autocast casts a convolution's operands straight into channels-last #emulated-gpu", function()
    -- (a weight cast to a contiguous bf16 copy would be laid out again for cuDNN:
    -- a bf16-to-bf16 copy in each pass)
    local summary = traced([[
      local x = miles.randn(2, 3, 8, 8):cuda()
      local w = miles.randn(4, 3, 3, 3):cuda()
      x.requires_grad, w.requires_grad = true, true
      local g = miles.randn(2, 4, 8, 8):bfloat16():cuda() -- contiguous: laid out once
      local function pass()
        miles.autocast(true, function() miles.F.conv2d(x, w, nil, { padding = 1 }):backward(g) end)
        miles.cuda.synchronize()
      end
      pass() -- (the plans made)
      pass()
    ]], 2)
    assert.truthy(summary:find("cudnn conv_bwd_filter bf16", 1, true), summary)
    -- one bf16 copy: the contiguous gradient laid out once for both passes
    local copies = summary:match("(%d+)%s+%d+%s+copy_kernel<%(dtype_t%)3, %(dtype_t%)3>")
    assert.equal("1", copies, summary)
  end)

  ;(H.cuda_emulated and it or pending)("t:add_(x) writes into t, without a copy back #emulated-gpu", function()
    local summary = traced([[
      local t, u = miles.randn(100):cuda(), miles.randn(100):cuda()
      miles.cuda.synchronize()
      t:add_(u)
      t:mul_(t)
      miles.cuda.synchronize()
    ]], 2)
    assert.truthy(summary:find("\n2 kernel launches", 1, true), summary)
    assert.falsy(summary:find("copy d2d", 1, true), summary)
  end)
end)

describe("convolution fallbacks", function()
  ;(H.cuda_emulated and it or pending)("none needed: the bias and relu fused into the graph #emulated-gpu", function()
    local out = run_conv_cases("MILES_CUDNN_VERBOSE=1")
    assert.truthy(out:find("conv2d (bias and relu fused): cuDNN engine", 1, true), out)
    assert.falsy(out:find("no cuDNN engine can run", 1, true), out)
  end)

  ;(H.cuda_emulated and it or pending)("when no engine fuses the bias or takes channels-last #emulated-gpu", function()
    local out = run_conv_cases("MILES_FAKE_CUDNN_REFUSE=fused,nhwc MILES_CUDNN_VERBOSE=1")
    assert.truthy(out:find("solving it in NCHW", 1, true), out)
    assert.truthy(out:find("no cuDNN engine can run this problem", 1, true), out) -- the fused try
  end)

  ;(H.cuda_emulated and it or pending)("when no engine takes a convolution at all #emulated-gpu", function()
    local out = run_conv_cases("MILES_FAKE_CUDNN_REFUSE=all MILES_CUDNN_VERBOSE=1")
    assert.truthy(out:find("running it as im2col + cuBLAS", 1, true), out)
  end)

  gpu_it("MILES_CONV_GEMM=1 runs every convolution as im2col + cuBLAS", function()
    local out, plans = run_conv_cases("MILES_CONV_GEMM=1")
    assert.equal("0", plans, out)
  end)
end)

-- The specs of a cuDNN path with our kernels behind it: its cases (a script for
-- run_cases) give the CPU's numbers, and on the emulated GPU (whose fake cuDNN
-- takes every graph) through cuDNN for each of ops; when the fake refuses them
-- (MILES_FAKE_CUDNN_REFUSE=refuse), or when our kernels time faster than its
-- engines (MILES_FAKE_CUDNN_COST), our kernels run them; with switch=0 no plan
-- is made. A real cuDNN decides which problems it takes: the numbers must
-- hold either way. more() adds specs to the block.
local function cudnn_path_specs(title, script, ops, refuse, switch, more)
  describe(title, function()
    gpu_it("gives the CPU's numbers", function()
      local out = run_cases(script, "MILES_CUDNN_VERBOSE=1")
      if H.cuda_emulated and os.getenv(switch) ~= "0" then -- (tools/gpu-check.sh may set it)
        for _, op in ipairs(ops) do
          assert.truthy(out:find(op .. ": cuDNN engine", 1, true), op .. "\n" .. out)
        end
        assert.falsy(out:find("running it on our kernels", 1, true), out)
        assert.falsy(out:find("our kernels chosen", 1, true), out)
      end
    end)

    ;(H.cuda_emulated and it or pending)("when no engine takes it, our kernels run it #emulated-gpu", function()
      local out = run_cases(script, "MILES_FAKE_CUDNN_REFUSE=" .. refuse .. " MILES_CUDNN_VERBOSE=1")
      assert.truthy(out:find("running it on our kernels", 1, true), out)
      for _, op in ipairs(ops) do
        assert.falsy(out:find(op .. ": cuDNN engine", 1, true), op .. "\n" .. out)
      end
    end)

    ;(H.cuda_emulated and it or pending)("when our kernels time faster, they run it #emulated-gpu", function()
      local out = run_cases(script, "MILES_FAKE_CUDNN_COST=50 MILES_CUDNN_VERBOSE=1")
      assert.truthy(out:find(ops[1] .. ": our kernels chosen", 1, true), out)
    end)

    gpu_it(switch .. "=0 runs it all on our kernels", function()
      local _, plans = run_cases(script, switch .. "=0")
      assert.equal("0", plans)
    end)

    if more then more() end
  end)
end

-- Batch norms in float32 and bfloat16 (float32 parameters), NCHW and
-- channels-last; training with and without running statistics, and evaluation;
-- plain, with a relu, with a residual, with a residual and a relu (the ResNet
-- block's end): the output, the updated running statistics and the gradients of
-- x, the weight, the bias and the residual. cfg (a Lua table constructor, as
-- text) narrows the loops and sets the shape: by default [3, C, 5, 7] with 16
-- channels (our kernels' 16-byte loads) and 6 without running statistics (one
-- channel at a time).
local function bn_cases(cfg)
  return "local cfg = " .. (cfg or "{}") .. [[

  local n = 0
  for _, dt in ipairs(cfg.dtypes or { "float32", "bfloat16" }) do
    for _, channels_last in ipairs(cfg.layouts or { false, true }) do
      for _, mode in ipairs(cfg.modes or { "train", "train-nostats", "eval" }) do
        for _, c in ipairs(cfg.channels or { mode == "train-nostats" and 6 or 16 }) do
          for _, ep in ipairs(cfg.epilogues or { "none", "relu", "residual", "residual+relu" }) do
            n = n + 1
            miles.manual_seed(n)
            local function act(t)
              t = (t * 2 + 0.5):to(dt)
              return channels_last and t:permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3) or t
            end
            local shape = { cfg.batch or 3, c, table.unpack(cfg.hw or { 5, 7 }) }
            local x, r = act(miles.randn(shape)), act(miles.randn(shape))
            local w, b = miles.randn(c) + 1, miles.randn(c)
            local rm, rv = miles.randn(c) * 0.1, miles.rand(c) + 0.5
            local function run(dev)
              local l = { x:clone():to(dev), w:clone():to(dev), b:clone():to(dev), r:clone():to(dev) }
              for _, t in ipairs(l) do t.requires_grad = true end
              local m, v = rm:clone():to(dev), rv:clone():to(dev)
              if mode == "train-nostats" then m, v = nil, nil end
              local opts = ep == "relu" and { relu = true }
                or ep == "residual" and { residual = l[4] }
                or ep == "residual+relu" and { residual = l[4], relu = true } or nil
              local y = F.batch_norm(l[1], m, v, l[2], l[3], mode ~= "eval", 0.1, 1e-5, opts)
              miles.manual_seed(99)
              local g = miles.randn(table.unpack(y:shape())):to(dt):to(dev)
              ;(y * g):sum():backward()
              local out = { y:cpu(), l[1].grad:cpu(), l[2].grad:cpu(), l[3].grad:cpu() }
              if ep:find("residual") then out[#out + 1] = l[4].grad:cpu() end
              if m then out[#out + 1] = m:cpu(); out[#out + 1] = v:cpu() end
              return out
            end
            record(dt, run("cuda"), run("cpu"))
          end
        end
      end
    end
  end
  report()
]]
end
local BN_CASES = bn_cases()

-- Batch norm through cuDNN's graph API (csrc/cuda/cudnn_norm.c), the epilogue
-- (residual, relu) fused into the forward's graph; the relu's backward a pass
-- before the norm's.
cudnn_path_specs("batch norm through cuDNN", BN_CASES, { "batch_norm", "batch_norm_backward" },
  "norm", "MILES_CUDNN_NORM", function()
  ;(H.cuda_emulated and it or pending)("when no engine fuses the epilogue, our kernels run those #emulated-gpu", function()
    local out = run_cases(BN_CASES, "MILES_FAKE_CUDNN_REFUSE=fused MILES_CUDNN_VERBOSE=1")
    assert.truthy(out:find("running it on our kernels", 1, true), out)
    assert.truthy(out:find("batch_norm: cuDNN engine", 1, true), out) -- the plain ones
  end)

  -- (our kernels sum rows in chunks, each thread BN_ROW_PASSES rows at least:
  -- 1296 rows are 2 to 4 chunks here)
  gpu_it("our kernels sum many channels-last rows in chunks, 16 channels at a time or one", function()
    local out, plans = run_cases(bn_cases([[{ layouts = { true }, modes = { "train" },
      channels = { 16, 6 }, epilogues = { "none", "residual+relu" }, batch = 4, hw = { 18, 18 } }]]),
      "MILES_CUDNN_NORM=0")
    assert.equal("0", plans, out)
  end)

  gpu_it("sends NCHW training and its backward to our kernels, making no plan", function()
    local _, plans = run_cases([[
      local x, g = miles.randn(3, 6, 5, 7), miles.randn(3, 6, 5, 7)
      local function run(dev)
        local t = x:clone():to(dev)
        t.requires_grad = true
        local y = F.batch_norm(t, nil, nil, miles.ones(6):to(dev), miles.zeros(6):to(dev), true,
          0.1, 1e-5, { relu = true })
        ;(y * g:to(dev)):sum():backward()
        return { y:cpu(), t.grad:cpu() }
      end
      record("float32", run("cuda"), run("cpu"))
      report()
    ]], "")
    assert.equal("0", plans)
  end)
end)

-- Pooling in float32 and bfloat16, NCHW and channels-last: max (padding, a
-- partial last window with ceil_mode, overlapping windows), average counting the
-- padding or not (and with ceil_mode, which cuDNN's count does not follow: our
-- kernels), adaptive average with windows that tile the input (7x7 to 1x1) and
-- that do not: outputs and the gradients of x.
local POOL_CASES = [[
  local n = 0
  for _, dt in ipairs({ "float32", "bfloat16" }) do
    for _, channels_last in ipairs({ false, true }) do
      n = n + 1
      miles.manual_seed(n)
      local x = miles.randn(2, 3, 14, 11):to(dt)
      local function layout(t) -- dense, in the case's layout
        return channels_last and t:permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3) or t:contiguous()
      end
      x = layout(x)
      local pools = {
        function(t) return F.max_pool2d(t, 3, 2, 1) end,
        function(t) return F.max_pool2d(t, 2, 2, 0, 1, true) end,
        function(t) return F.avg_pool2d(t, { 3, 2 }, 2, { 1, 0 }, false, true) end,
        function(t) return F.avg_pool2d(t, 3, 2, 1, false, false) end,
        function(t) return F.avg_pool2d(t, 2, 2, 0, true, true) end,
        function(t) return F.adaptive_avg_pool2d(layout(t:narrow(3, 1, 7):narrow(4, 1, 7)), { 1, 1 }) end,
        function(t) return F.adaptive_avg_pool2d(t, { 4, 3 }) end,
      }
      for _, pool in ipairs(pools) do
        local function run(dev)
          local t = x:clone():to(dev)
          t.requires_grad = true
          local y = pool(t)
          miles.manual_seed(99)
          local w = miles.randn(table.unpack(y:shape())):to(dt):to(dev)
          ;(y * w):sum():backward()
          return { y:cpu(), t.grad:cpu() }
        end
        record(dt, run("cuda"), run("cpu"))
      end
    end
  end
  report()
]]

-- Pooling through cuDNN's graph API (csrc/cuda/cudnn_pool.c): max pooling only
-- when engines take its forward and its backward (which reads the forward's
-- index).
cudnn_path_specs("pooling through cuDNN", POOL_CASES,
  { "max_pool2d", "max_pool2d backward", "avg_pool2d", "avg_pool2d backward", "adaptive_avg_pool2d",
    "adaptive_avg_pool2d backward" }, "pool", "MILES_CUDNN_POOL", function()
  ;(H.cuda_emulated and it or pending)("when no engine takes max pooling's backward, our kernels run both passes #emulated-gpu", function()
    local out = run_cases(POOL_CASES, "MILES_FAKE_CUDNN_REFUSE=pool_bwd MILES_CUDNN_VERBOSE=1")
    assert.truthy(out:find("max_pool2d backward: no cuDNN engine", 1, true), out)
    assert.truthy(out:find("avg_pool2d: cuDNN engine", 1, true), out) -- the forwards
  end)

  gpu_it("sends NCHW max pooling and average pooling's NCHW backward to our kernels", function()
    local script = [[
      local x = miles.randn(2, 3, 14, 11)
      local function run(dev, pool)
        local t = x:clone():to(dev)
        t.requires_grad = true
        local y = pool(t)
        ;(y * y):sum():backward()
        return { y:cpu(), t.grad:cpu() }
      end
      local pool = POOL
      record("float32", run("cuda", pool), run("cpu", pool))
      report()
    ]]
    local _, plans = run_cases(script:gsub("POOL", "function(t) return F.max_pool2d(t, 3, 2, 1) end"), "")
    assert.equal("0", plans)
    local out
    out, plans = run_cases(script:gsub("POOL", "function(t) return F.avg_pool2d(t, 3, 2, 1) end"),
      "MILES_CUDNN_VERBOSE=1")
    assert.is_true(tonumber(plans) <= 1, out) -- (the forward's, where an engine takes it)
    assert.falsy(out:find("avg_pool2d backward: cuDNN engine", 1, true), out)
  end)
end)

-- Activations in float32 and bfloat16: relu, sigmoid and tanh on tensors large
-- enough for cuDNN (65536 elements and more; contiguous and channels-last) and on
-- a small one (our kernels), with gradients dense and broadcast (a sum's).
local ACT_CASES = [[
  local n = 0
  for _, dt in ipairs({ "float32", "bfloat16" }) do
    for _, shape in ipairs({ { 4, 64, 16, 16 }, { 3, 5 } }) do
      for _, channels_last in ipairs({ false, true }) do
        for _, f in ipairs({ F.relu, F.sigmoid, F.tanh }) do
          for _, summed in ipairs({ false, true }) do
            n = n + 1
            miles.manual_seed(n)
            local x = (miles.randn(table.unpack(shape)) * 3):to(dt)
            if channels_last and #shape == 4 then x = x:permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3) end
            local function run(dev)
              local t = x:clone():to(dev)
              t.requires_grad = true
              local y = f(t)
              if summed then
                y:sum():backward()
              else
                miles.manual_seed(99)
                ;(y * miles.randn(table.unpack(shape)):to(dt):to(dev)):sum():backward()
              end
              return { y:cpu(), t.grad:cpu() }
            end
            record(dt, run("cuda"), run("cpu"))
          end
        end
      end
    end
  end
  report()
]]

-- Activations through cuDNN's graph API (csrc/cuda/cudnn_act.c): relu, sigmoid,
-- tanh and relu's gradient on large tensors.
cudnn_path_specs("activations through cuDNN", ACT_CASES, { "activation", "relu backward" }, "act",
  "MILES_CUDNN_ACT")

-- The cuDNN plan cache is bounded (MILES_CUDNN_PLANS): with room for 2 plans,
-- convolutions of 4 shapes, twice over, evict and rebuild plans and stay right.
describe("the cuDNN plan cache", function()
  -- (convolutions make no plan with tools/gpu-check.sh's fallback MILES_CONV_GEMM=1)
  ;(os.getenv("MILES_CONV_GEMM") == "1" and pending or gpu_it)("keeps at most MILES_CUDNN_PLANS plans, evicting the least recently used", function()
    local script = [[
      local miles = require "miles"
      local F = miles.F
      miles.cuda.allow_tf32(false)
      miles.manual_seed(3)
      local w = miles.randn(4, 3, 3, 3)
      local wd = w:cuda()
      local worst, most = 0, 0
      for _ = 1, 2 do
        for size = 5, 8 do
          local x = miles.randn(2, 3, size, size)
          local got = F.conv2d(x:cuda(), wd, nil, { padding = 1 }):cpu()
          local want = F.conv2d(x, w, nil, { padding = 1 })
          worst = math.max(worst, (got - want):abs():max():item())
          most = math.max(most, miles.cuda.memory_stats().cudnn_plans)
        end
      end
      print(("worst %g most %d"):format(worst, most))
    ]]
    local out = run_child("MILES_CUDNN_PLANS=2", script)
    local worst, most = out:match("worst (%S+) most (%d+)")
    assert.is_not_nil(worst, out)
    assert.is_true(tonumber(worst) < 1e-4, out)
    assert.equal(2, tonumber(most), out)
  end)
end)

-- Two GPUs: each has its own stream, caches, library handles; work on one must
-- not run on the other's stream (the fake runtime refuses that, as CUDA does).
-- On the emulated GPU a child process is given two (MILES_FAKE_GPUS=2), with a
-- plan cache of one plan, so that each GPU's convolutions evict the other's.
describe("two GPUs", function()
  local two = H.cuda_emulated or (H.cuda_available and miles.cuda.device_count() >= 2)
  ;(two and it or pending)(H.gpu_name("train on cuda:1 and cuda:0 in turn, and move between them #gpu"), function()
    local script = [[
      local miles = require "miles"
      local F, nn = miles.F, miles.nn
      miles.cuda.allow_tf32(false)
      local function run(dev)
        miles.manual_seed(2)
        local net = nn.Sequential(nn.Conv2d(3, 8, 3, { padding = 1 }), nn.BatchNorm2d(8), nn.ReLU(),
          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)):to(dev)
        local opt = miles.optim.Adam(net:parameters(), { lr = 1e-2 })
        local x, y = miles.randn(6, 3, 8, 8):to(dev), miles.randint(1, 5, { 6 }):to(dev)
        for _ = 1, 3 do
          opt:zero_grad()
          F.cross_entropy(net(x), y):backward()
          opt:step()
        end
        return net[1].weight:cpu()
      end
      local want, worst = run("cpu"), 0
      for _, dev in ipairs({ "cuda:1", "cuda:0", "cuda:1" }) do
        worst = math.max(worst, (run(dev) - want):abs():max():item())
      end
      local a = miles.randn(5, 7)
      local b = a:to("cuda:1"):to("cuda:0"):to("cuda:1"):cpu()
      -- a capture on cuda:0 refuses cuda:1's memory and waits for cuda:1 (either
      -- would break the capture)
      local x0, t1, s1 = miles.randn(4):to("cuda:0"), miles.randn(4):to("cuda:1"), miles.randn(1):to("cuda:1")
      local ok, err = pcall(miles.cuda.graph, function() local _ = x0 * 2; return t1:sum() end,
                            { device = "cuda:0" })
      local ok2, err2 = pcall(miles.cuda.graph, function() local _ = x0 * 2; return s1:item() end,
                              { device = "cuda:0" })
      local refused = not ok and err:find("no memory can be allocated there while a CUDA graph", 1, true)
                      and not ok2 and err2:find("cannot read cuda:1 while a CUDA graph is being captured",
                                                1, true) ~= nil
      local after = (x0 * 2):sum():item() -- and the GPUs work on after it
      print(("worst %g moved %g refused %s after %s"):format(worst, (b - a):abs():max():item(),
            tostring(refused), tostring(after == after)))
    ]]
    local env = (H.cuda_emulated and "MILES_FAKE_GPUS=2 " or "") .. "MILES_CUDNN_PLANS=1"
    local out = run_child(env, script)
    local worst, moved, refused, after = out:match("worst (%S+) moved (%S+) refused (%S+) after (%S+)")
    assert.is_not_nil(worst, out)
    assert.is_true(tonumber(worst) < 1e-4, out)
    assert.equal(0, tonumber(moved), out)
    assert.equal("true", refused, out)
    assert.equal("true", after, out)
  end)
end)

-- Gradients of gather and index_select add repeated indices' values (scatter_add,
-- index_add): atomically, in any order, unless deterministic, where the GPU adds
-- in the CPU's order and gives its bits.
describe("deterministic index additions", function()
  gpu_it("equal the CPU's bits with miles.cuda.deterministic(true)", function()
    local was = miles.cuda.deterministic()
    finally(function() miles.cuda.deterministic(was) end)
    miles.cuda.deterministic(true)
    miles.manual_seed(11)
    local x = miles.randn(6, 40, 3)
    local rows = miles.randint(1, 7, { 500 })        -- index_select: rows repeat ~80 times
    local picks = miles.randint(1, 41, { 6, 300, 3 }) -- gather along dim 2
    local g1, g2 = miles.randn(500, 40, 3), miles.randn(6, 300, 3)
    local function grads(dev)
      local a = x:clone():to(dev)
      a.requires_grad = true
      ;(a:index_select(1, rows:to(dev)) * g1:to(dev)):sum():backward()
      local b = x:clone():to(dev)
      b.requires_grad = true
      ;(b:gather(2, picks:to(dev)) * g2:to(dev)):sum():backward()
      return a.grad:cpu(), b.grad:cpu()
    end
    local ca, cb = grads("cpu")
    for _ = 1, 2 do
      local ga, gb = grads("cuda")
      assert.equal(0, H.max_abs_diff(ga, ca))
      assert.equal(0, H.max_abs_diff(gb, cb))
    end
  end)
end)

describe("devices without a GPU", function()
  local no_gpu_it = H.cuda_available and pending or it

  no_gpu_it("moving a tensor to cuda says why it cannot", function()
    local want = miles.cuda.is_built() and "no CUDA device is available on this machine"
                 or "this build of miles has no CUDA backend"
    H.raises(function() return miles.ones(3):cuda() end, want)
    H.raises(function() return miles.ones(3, { device = "cuda" }) end, want)
    H.raises(function() return miles.ones(3):to("cuda:1") end, want)
    H.raises(function() return nn.Linear(2, 3):cuda() end, want)
    H.raises(function() return miles.tensor({ 1, 2 }, { device = "cuda" }) end, want)
    H.raises(function() miles.cuda.synchronize() end, want)
    H.raises(function() miles.cuda.graph(function() end) end, "miles.cuda.graph: " .. want)
    assert.is_false(miles.cuda.is_available())
  end)

  it("miles.cuda.graph checks its arguments before asking for a GPU", function()
    H.raises(function() miles.cuda.graph(42) end, "expects a function to capture")
    H.raises(function() miles.cuda.graph(function() end, { devcie = "cuda" }) end,
      "unknown option 'devcie'")
    H.raises(function() miles.cuda.graph(function() end, { device = "cpu" }) end,
      "device must be 'cuda' or 'cuda:N', not cpu")
  end)

  it("the GPU settings are switches: deterministic is off by default and off without CUDA", function()
    assert.is_false(miles.cuda.deterministic())
    finally(function() miles.cuda.deterministic(false) end)
    assert.equal(miles.cuda.is_built(), miles.cuda.deterministic(true))
    assert.is_false(miles.cuda.deterministic(false))
  end)

  it("miles.tensor keeps a source tensor's device and honours device =", function()
    local x = miles.tensor({ { 1, 2 }, { 3, 4 } }, { device = "cpu", requires_grad = false })
    assert.equal("cpu", x:device())
    local y = miles.tensor(x, { dtype = "float64" })
    assert.equal("cpu", y:device())
    assert.equal("float64", y:dtype())
    local z = miles.tensor({ 1.5, 2.5 }, { requires_grad = true })
    assert.is_true(z.requires_grad)
    H.raises(function() return miles.tensor({ 1, 2 }, { requires_grad = true }) end,
      "only float tensors can require gradients")
  end)

  it("cpu to cpu moves return the same tensor", function()
    local x = miles.ones(3)
    assert.equal(x, x:cpu())
    assert.equal(x, x:to("cpu"))
  end)

  it("Module:to replaces parameters and buffers, keeping leaves and sharing", function()
    miles.manual_seed(50)
    local lin = nn.Linear(3, 2)
    local net = nn.Sequential(lin, nn.BatchNorm1d(2), lin) -- lin shared
    local before = H.copy_state(net:state_dict())
    assert.equal(net, net:to("cpu"))
    assert.is_true(H.same_state(before, net:state_dict()))
    for _, p in ipairs(net:parameters()) do
      assert.is_true(p.requires_grad)
      assert.is_true(p.is_leaf)
    end
    assert.equal(net[1].weight, net[3].weight)
  end)
end)
