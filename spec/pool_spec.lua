-- max_pool2d, avg_pool2d, adaptive_avg_pool2d, interpolate and dropout: against
-- PyTorch fixtures (spec/fixtures/make_pool_fixtures.py; spec/fixtures/pool/cases.lua
-- lists the cases) in float64 and float32, against finite differences in float64,
-- and their argument handling and error messages.
local miles = require "miles"
local H = require "helpers"
local _, gpu_describe = H.gpu_specs(it, describe, pending)
local F = miles.F

local CASES = dofile(H.fixtures .. "pool/cases.lua")

local function load(case, name)
  return H.fixture("pool/" .. case .. "_" .. name)
end

-- float64: the same sums as PyTorch up to their order; float32 is compared with
-- PyTorch's own float32 results (oneDNN's sums may run in another order).
local TOL = { float64 = { 1e-12, 1e-13 }, float32 = { 1e-5, 1e-6 } }

--- A float64 leaf of the given shape whose values are far apart (gaps about 0.1)
-- in a random order: max pooling has no ties, even after a finite-difference step.
local function distinct(...)
  local shape = { ... }
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local t = ((miles.randperm(n):to("float64") - n / 2) * 0.1):reshape(shape)
  t.requires_grad = true
  return t
end

--- t with the same shape, stored channels-last (NHWC in memory), like the
-- float32 outputs of conv2d.
local function channels_last(t)
  return t:permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3)
end

local function shape_of(t)
  return table.concat(t:shape(), "x")
end

-- Each fixture case on `dev` (cpu, or cuda: the GPU's float32 follows PyTorch's
-- loops, not oneDNN, so float32 is compared like float64's order differences).
local function fixture_cases(dev)
  for _, c in ipairs(CASES) do
    for _, dtype in ipairs({ "float64", "float32" }) do
      local tag = dtype == "float64" and "64" or "32"
      it(c.name .. " (" .. c.op .. ", " .. dtype .. ")", function()
        local x = load(c.name, "x"):to(dtype):to(dev)
        x.requires_grad = true
        local y = F[c.op](x, c.opts)
        local rtol, atol = TOL[dtype][1], TOL[dtype][2]
        assert.equal(dtype, y:dtype())
        H.assert_close(y:cpu(), load(c.name, "out" .. tag), rtol, atol, "output")
        ;(y * load(c.name, "w"):to(dtype):to(dev)):sum():backward()
        H.assert_close(x.grad:cpu(), load(c.name, "gx" .. tag), rtol, atol, "grad input")
      end)
    end
  end
end

describe("pooling and resizing against PyTorch", function()
  fixture_cases("cpu")
end)

gpu_describe("pooling and resizing against PyTorch on cuda #gpu", function()
  fixture_cases("cuda")
end)

describe("channels-last float32 inputs (convolutions' outputs)", function()
  for _, c in ipairs(CASES) do
    if c.op ~= "interpolate" then
      it(c.name .. " stays channels-last and matches PyTorch", function()
        local x = channels_last(load(c.name, "x"):to("float32"))
        x.requires_grad = true
        local y = F[c.op](x, c.opts)
        local s = y:shape()
        if s[2] > 1 and s[3] * s[4] > 1 then
          assert.same({ s[2] * s[3] * s[4], 1, s[4] * s[2], s[2] }, y:stride())
        end
        H.assert_close(y, load(c.name, "out32"), 1e-5, 1e-6, "output")
        ;(y * load(c.name, "w"):to("float32")):sum():backward()
        H.assert_close(x.grad, load(c.name, "gx32"), 1e-5, 1e-6, "grad input")
      end)
    end
  end
end)

describe("gradient checks in float64", function()
  it("max_pool2d with padding, dilation and ceil_mode", function()
    H.gradcheck(function(x) return F.max_pool2d(x, 3, 2, 1, 1, true) end, { distinct(2, 2, 6, 5) })
    H.gradcheck(function(x) return F.max_pool2d(x, { 2, 3 }, { 1, 2 }, { 1, 0 }, 2) end,
      { distinct(1, 2, 7, 6) })
  end)

  it("avg_pool2d with and without the padding in the count", function()
    local x = H.leaf(2, 2, 8, 7)
    H.gradcheck(function(t) return F.avg_pool2d(t, 3, 2, 1, true, true) end, { x })
    H.gradcheck(function(t) return F.avg_pool2d(t, 3, 2, 1, true, false) end, { x })
    H.gradcheck(function(t) return F.avg_pool2d(t, { 2, 3 }, 1) end, { x })
  end)

  it("adaptive_avg_pool2d to 1x1 and to overlapping windows", function()
    local x = H.leaf(2, 3, 5, 7)
    H.gradcheck(function(t) return F.adaptive_avg_pool2d(t, 1) end, { x })
    H.gradcheck(function(t) return F.adaptive_avg_pool2d(t, { 3, 4 }) end, { x })
  end)

  it("interpolate, bilinear (both align_corners) and nearest", function()
    local x = H.leaf(1, 2, 4, 5)
    for _, ac in ipairs({ false, true }) do
      H.gradcheck(function(t) return F.interpolate(t, { size = { 7, 3 }, mode = "bilinear", align_corners = ac }) end, { x })
    end
    H.gradcheck(function(t) return F.interpolate(t, { scale_factor = 1.5, mode = "bilinear" }) end, { x })
    H.gradcheck(function(t) return F.interpolate(t, { size = { 6, 4 } }) end, { x })
  end)

  it("dropout (with its mask fixed by the seed)", function()
    H.gradcheck(function(t)
      miles.manual_seed(11)
      return F.dropout(t, 0.4)
    end, { H.leaf(3, 5) })
  end)
end)

describe("float32 (oneDNN) and float64 (loops) agree", function()
  local function both(fn, x)
    local a, b = x:to("float32"), x:clone() -- fresh leaves (x itself stays as it is)
    a.requires_grad, b.requires_grad = true, true
    local ya, yb = fn(a), fn(b)
    H.assert_close(ya, yb, 1e-5, 1e-5, "output")
    local w = miles.randn(ya:shape(), { dtype = "float64" })
    ;(ya * w:to("float32")):sum():backward()
    ;(yb * w):sum():backward()
    H.assert_close(a.grad, b.grad, 1e-5, 1e-5, "grad input")
  end

  it("on larger inputs, every window kind", function()
    local x = distinct(4, 8, 15, 13):detach()
    both(function(t) return F.max_pool2d(t, 3, 2, 1, 1, true) end, x)
    both(function(t) return F.max_pool2d(t, 2, 2) end, x)
    both(function(t) return F.avg_pool2d(t, 3, 2, 1) end, x)
    both(function(t) return F.avg_pool2d(t, 3, 2, 1, true, false) end, x)
    both(function(t) return F.avg_pool2d(t, 3, 2, 1, true, true) end, x)
  end)
end)

describe("pooling arguments", function()
  local x = miles.randn(2, 3, 9, 8)

  it("takes them positionally or in an options table, stride defaulting to the kernel", function()
    H.assert_close(F.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, { stride = 2, padding = 1 }), 0, 0)
    H.assert_close(F.max_pool2d(x, 2), F.max_pool2d(x, { kernel_size = 2, stride = { 2, 2 } }), 0, 0)
    H.assert_close(F.avg_pool2d(x, 3, nil, 1, true, false),
      F.avg_pool2d(x, 3, { padding = 1, ceil_mode = true, count_include_pad = false }), 0, 0)
    assert.same({ 2, 3, 3, 2 }, F.max_pool2d(x, { 3, 4 }):shape())
    assert.same({ 2, 3, 5, 4 }, F.max_pool2d(x, 3, 2, 1):shape())
  end)

  it("accepts non-contiguous inputs", function()
    local t = miles.randn(2, 3, 7, 9):transpose(3, 4)
    H.assert_close(F.max_pool2d(t, 3, 2, 1), F.max_pool2d(t:contiguous(), 3, 2, 1), 0, 0)
    H.assert_close(F.avg_pool2d(t, 2), F.avg_pool2d(t:contiguous(), 2), 0, 0)
    H.assert_close(F.adaptive_avg_pool2d(t, 2), F.adaptive_avg_pool2d(t:contiguous(), 2), 0, 0)
    H.assert_close(F.interpolate(t, { size = 5, mode = "bilinear" }),
      F.interpolate(t:contiguous(), { size = 5, mode = "bilinear" }), 0, 0)
  end)

  it("handles an empty batch", function()
    local e = miles.zeros(0, 3, 6, 6)
    assert.same({ 0, 3, 3, 3 }, F.max_pool2d(e, 2):shape())
    assert.same({ 0, 3, 1, 1 }, F.adaptive_avg_pool2d(e, 1):shape())
  end)

  it("reports bad arguments, naming the op", function()
    assert.matches("max_pool2d: expected a 4%-D input %[N,C,H,W%], got %[3,4%]",
      H.error_of(F.max_pool2d, miles.randn(3, 4), 2))
    assert.matches("max_pool2d: output size would be 0 for input 2x2 with kernel 3",
      H.error_of(F.max_pool2d, miles.randn(1, 1, 2, 2), 3))
    assert.matches("avg_pool2d: padding must be between 0 and half the kernel size",
      H.error_of(F.avg_pool2d, x, 3, 1, 2))
    assert.matches("max_pool2d: stride must be positive", H.error_of(F.max_pool2d, x, 3, 0))
    assert.matches("max_pool2d: dilation must be positive", H.error_of(F.max_pool2d, x, 3, 1, 0, 0))
    assert.matches("max_pool2d: give the kernel_size", H.error_of(F.max_pool2d, x))
    assert.matches("max_pool2d: unknown option 'strides'", H.error_of(F.max_pool2d, x, 3, { strides = 2 }))
    assert.matches("given twice", H.error_of(F.max_pool2d, x, 3, 2, { stride = 2 }))
    assert.matches("kernel_size must be an integer", H.error_of(F.max_pool2d, x, "3"))
    assert.matches("must be float32, float64 or bfloat16", H.error_of(F.max_pool2d, miles.zeros(1, 1, 4, 4, { dtype = "int64" }), 2))
    assert.matches("adaptive_avg_pool2d: output_size must be non%-negative",
      H.error_of(F.adaptive_avg_pool2d, x, { 2, -1 }))
  end)
end)

describe("interpolate arguments", function()
  local x = miles.randn(1, 2, 4, 6)

  it("takes a size, a scale factor or positional arguments", function()
    assert.equal("1x2x8x12", shape_of(F.interpolate(x, { scale_factor = 2 })))
    assert.equal("1x2x6x3", shape_of(F.interpolate(x, { scale_factor = { 1.5, 0.5 }, mode = "bilinear" })))
    assert.equal("1x2x5x5", shape_of(F.interpolate(x, { size = 5 })))
    H.assert_close(F.interpolate(x, { 7, 9 }, nil, "bilinear", true),
      F.interpolate(x, { size = { 7, 9 }, mode = "bilinear", align_corners = true }), 0, 0)
  end)

  it("keeps values when the size does not change", function()
    H.assert_close(F.interpolate(x, { size = { 4, 6 }, mode = "bilinear" }), x, 0, 0)
    H.assert_close(F.interpolate(x, { size = { 4, 6 } }), x, 0, 0)
  end)

  it("reports bad arguments", function()
    assert.matches("exactly one of size and scale_factor", H.error_of(F.interpolate, x, { mode = "bilinear" }))
    assert.matches("exactly one of size and scale_factor", H.error_of(F.interpolate, x, { size = 3, scale_factor = 2 }))
    assert.matches("align_corners can only be set with mode 'bilinear'",
      H.error_of(F.interpolate, x, { size = 3, align_corners = false }))
    assert.matches("mode 'bicubic' is not supported", H.error_of(F.interpolate, x, { size = 3, mode = "bicubic" }))
    assert.matches("interpolate: output size would be 0x1 for input 4x6", H.error_of(F.interpolate, x, { scale_factor = 0.2, mode = "nearest" }))
    assert.matches("interpolate: expected a 4%-D input", H.error_of(F.interpolate, miles.randn(2, 3, 4), { size = 2 }))
  end)
end)

describe("dropout", function()
  it("returns its input when not training or when p is 0", function()
    local x = miles.randn(4, 5)
    assert.is_true(F.dropout(x, 0) == x)
    assert.is_true(F.dropout(x, 0.5, false) == x)
    assert.is_true(F.dropout(x, { p = 0.9, training = false }) == x)
  end)

  it("zeros everything when p is 1", function()
    local x = miles.randn(3, 4)
    x.requires_grad = true
    local y = F.dropout(x, 1)
    assert.equal(0, y:abs():sum():item())
    y:sum():backward()
    assert.equal(0, x.grad:abs():sum():item())
  end)

  it("keeps about 1 - p of the elements, scaled by 1/(1 - p), and passes the same mask back", function()
    local x = miles.ones(200, 100)
    x.requires_grad = true
    local y = F.dropout(x, 0.3)
    local kept = y:ne(0):to("float64"):mean():item()
    assert.is_true(math.abs(kept - 0.7) < 0.02, "kept fraction " .. kept)
    local scale = 1 / 0.7
    assert.is_true(math.abs(y:max():item() - scale) < 1e-6)
    y:sum():backward()
    H.assert_close(x.grad, y:detach(), 0, 0, "grad")
  end)

  it("is reproducible under miles.manual_seed", function()
    local x = miles.randn(6, 7)
    miles.manual_seed(5)
    local a = F.dropout(x, 0.5)
    miles.manual_seed(5)
    local b = F.dropout(x, 0.5)
    local c = F.dropout(x, 0.5)
    H.assert_close(a, b, 0, 0)
    assert.is_true(H.max_abs_diff(b, c) > 0)
  end)

  it("rejects a p outside [0, 1]", function()
    local x = miles.randn(2, 2)
    assert.matches("dropout: probability has to be between 0 and 1, but got 1.5", H.error_of(F.dropout, x, 1.5))
    assert.matches("between 0 and 1", H.error_of(F.dropout, x, -0.1))
    assert.matches("between 0 and 1", H.error_of(F.dropout, x, 0 / 0))
  end)
end)

describe("threads", function()
  it("give the same results on one thread and on several", function()
    local n0 = miles.get_num_threads()
    local x = distinct(8, 16, 20, 19):detach()
    local function run()
      local t = x:clone()
      t.requires_grad = true
      local y = F.max_pool2d(t, 3, 2, 1) + F.adaptive_avg_pool2d(t, { 7, 5 }):mean()
      local z = F.interpolate(t, { size = { 33, 31 }, mode = "bilinear" }):sum()
      local a = F.avg_pool2d(t, 3, 2, 1, true, true):sum()
      local m = F.adaptive_avg_pool2d(channels_last(t:float()), 1):sum()
      ;(y:sum() + z + a + m):backward()
      return y, t.grad
    end
    miles.set_num_threads(1)
    local y1, g1 = run()
    miles.set_num_threads(math.max(2, n0))
    local y2, g2 = run()
    miles.set_num_threads(n0)
    H.assert_close(y1, y2, 0, 0, "output")
    H.assert_close(g1, g2, 1e-12, 1e-12, "grad")
  end)
end)
