-- Analytic gradients against central finite differences (H.gradcheck, float64)
-- for every differentiable op: elementwise with broadcasting and scalars,
-- reductions, matrix products, softmax, losses, views and indexing, on
-- contiguous and non-contiguous (transposed, expanded, narrowed) inputs, and
-- composite expressions. Inputs are small (a few to ~30 elements).
local miles = require "miles"
local H = require "helpers"
local F = miles.F

local F64 = { dtype = "float64" }

--- A float64 leaf of standard normal values.
local function leaf(...)
  return H.leaf(...)
end

--- A float64 leaf with values in [lo, hi).
local function uniform(lo, hi, ...)
  local t = miles.rand(...):to("float64") * (hi - lo) + lo
  t.requires_grad = true
  return t
end

--- A float64 leaf with |values| in [0.2, 1.2): no kink of abs, relu, sign,
-- clamp at 0 or division by zero within a finite-difference step.
local function away(...)
  local t = miles.rand(...):to("float64") + 0.2
  local s = miles.rand(...):gt(0.5):to("float64") * 2 - 1
  t = t * s
  t = t:detach()
  t.requires_grad = true
  return t
end

--- Check fn's gradients with respect to every input.
local function check(fn, ...)
  assert.is_true(H.gradcheck(fn, { ... }))
end

local function int64(t)
  return miles.tensor(t, { dtype = "int64" })
end

describe("gradcheck", function()
  before_each(function() miles.manual_seed(42) end)

  describe("unary ops", function()
    local ops = { "neg", "abs", "exp", "square", "sigmoid", "tanh", "softplus", "relu", "sign",
      "reciprocal" }
    for _, op in ipairs(ops) do
      it(op, function()
        check(function(x) return x[op](x) end, away(3, 4))
      end)
    end
    for _, op in ipairs({ "log", "sqrt", "rsqrt" }) do
      it(op, function()
        check(function(x) return x[op](x) end, uniform(0.3, 2, 3, 4))
      end)
    end
    it("clamp with both bounds, only min, only max", function()
      local x = away(4, 5)
      check(function(t) return t:clamp(-0.5, 0.5) end, x)
      check(function(t) return t:clamp(-0.5) end, x)
      check(function(t) return t:clamp(nil, 0.5) end, x)
    end)
    it("pow with a number exponent", function()
      check(function(t) return t ^ 2 end, away(3, 4))
      check(function(t) return t:pow(3) end, away(3, 4))
      check(function(t) return t ^ 0.5 end, uniform(0.3, 2, 3, 4))
      check(function(t) return t ^ -1.5 end, uniform(0.3, 2, 3, 4))
      check(function(t) return t ^ 0 end, away(3, 4))
    end)
    it("pow with a number base", function()
      check(function(t) return 2.5 ^ t end, leaf(3, 4))
    end)
    it("x ^ 0 has a zero gradient at x = 0", function()
      local x = miles.zeros(3, { dtype = "float64", requires_grad = true });
      (x ^ 0):sum():backward()
      H.assert_close(x.grad, { 0, 0, 0 }, 0, 0)
    end)
    it("on a transposed input", function()
      check(function(t) return t:t():exp() * t:t():sigmoid() end, leaf(3, 4))
    end)
    it("on a narrowed input", function()
      check(function(t) return t:narrow(2, 2, 3):tanh() end, leaf(3, 5))
    end)
    it("on an expanded input", function()
      check(function(t) return t:expand(3, 4):square() end, leaf(1, 4))
    end)
  end)

  describe("binary ops", function()
    local ops = {
      add = function(a, b) return a + b end,
      sub = function(a, b) return a - b end,
      mul = function(a, b) return a * b end,
      div = function(a, b) return a / b end,
      maximum = function(a, b) return miles.maximum(a, b) end,
      minimum = function(a, b) return a:minimum(b) end,
    }
    for name, op in pairs(ops) do
      it(name .. ", same shape and broadcast [3,1,2] with [2,2]", function()
        check(op, leaf(3, 4), away(3, 4))
        check(op, leaf(3, 1, 2), away(2, 2))
        check(op, away(2, 2), leaf(3, 1, 2))
      end)
    end
    it("pow with two tensors (positive base), broadcast", function()
      check(function(a, b) return a ^ b end, uniform(0.3, 2, 3, 1, 2), leaf(2, 2))
    end)
    it("pow's gradients at base 0 are PyTorch's limits", function()
      local a = miles.tensor({ 0, 0, 0, 2 }, { dtype = "float64", requires_grad = true })
      local b = miles.tensor({ 2, 0, 0.5, 3 }, { dtype = "float64", requires_grad = true });
      (a ^ b):sum():backward()
      local ga, gb = a.grad:totable(), b.grad:totable()
      assert.are.same({ 0, 0, math.huge, 12 }, ga)
      assert.are.same({ 0, 0, 0 }, { gb[1], gb[2], gb[3] })
      assert.is_true(math.abs(gb[4] - 8 * math.log(2)) < 1e-14)
    end)
    it("add with alpha", function()
      check(function(a, b) return miles.add(a, b, -0.5) end, leaf(3, 4), leaf(4))
    end)
    it("a 0-dim tensor with a matrix, [3,1] with [1,4], [4] with [2,3,4]", function()
      check(function(a, b) return a * b end, leaf(), leaf(3))
      check(function(a, b) return a / b end, leaf(3, 1), away(1, 4))
      check(function(a, b) return a - b end, leaf(4), leaf(2, 3, 4))
    end)
    it("Lua numbers on either side", function()
      local x = away(3, 4)
      check(function(t) return t + 2 end, x)
      check(function(t) return 2 - t end, x)
      check(function(t) return t * -3 end, x)
      check(function(t) return 1.5 / t end, x)
      check(function(t) return t / 4 - 1 end, x)
    end)
    it("non-contiguous operands: transposed with narrowed, expanded with transposed", function()
      check(function(a, b) return a:t() * b:narrow(1, 2, 4) end, leaf(3, 4), leaf(5, 3))
      check(function(a, b) return a:expand(4, 3) + b:t() end, leaf(3), leaf(3, 4))
    end)
    it("where, with a broadcast condition and a number", function()
      local cond = miles.tensor({ { true }, { false }, { true } })
      check(function(a, b) return miles.where(cond, a, b) end, leaf(1, 4), leaf(3, 4))
      check(function(a) return miles.where(cond, a, 0.5) end, leaf(3, 4))
      check(function(a) return miles.where(a:gt(0), a, a * 0.1) end, away(3, 4))
    end)
    it("dtype conversions keep the gradient flowing (through float32, coarse steps)", function()
      local x = leaf(3, 2)
      assert.is_true(H.gradcheck(function(a)
        return (a:to("float32") * 2):exp():to("float64")
      end, { x }, { eps = 1e-2, rtol = 1e-3, atol = 1e-3 }))
    end)
  end)

  describe("reductions", function()
    local ops = { "sum", "mean", "prod", "logsumexp", "amax", "amin" }
    for _, op in ipairs(ops) do
      it(op .. " over all, one, the last and two dims (keepdim)", function()
        local x = uniform(0.5, 1.5, 2, 3, 4)
        local f = function(t, ...) return t[op](t, ...) end
        check(function(t) return f(t) end, x)
        check(function(t) return f(t, 2) end, x)
        check(function(t) return f(t, -1) end, x)
        check(function(t) return f(t, { 1, 3 }, true) end, x)
        check(function(t) return f(t:transpose(1, 3), { 1, 2 }) end, x)
      end)
    end
    it("prod with one and with two zeros in a row", function()
      local x = miles.tensor({ { 0.5, 0, 2, 1.5 }, { 0, 3, 0, 1 }, { 1, 2, 3, 4 } }, F64)
      x.requires_grad = true
      check(function(t) return t:prod(2) end, x)
      check(function(t) return t:prod() end, x)
    end)
    for _, op in ipairs({ "var", "std" }) do
      it(op .. " with correction 0 and 1, over all, one and two dims", function()
        local x = leaf(2, 3, 4)
        local f = function(t, ...) return t[op](t, ...) end
        check(function(t) return f(t) end, x)
        check(function(t) return f(t, nil, { correction = 0 }) end, x)
        check(function(t) return f(t, 2) end, x)
        check(function(t) return f(t, { 1, 3 }, { keepdim = true, correction = 0 }) end, x)
        check(function(t) return f(t:permute(3, 1, 2), 1, { unbiased = false }) end, x)
      end)
    end
    it("max and min along a dim (values)", function()
      local x = leaf(3, 4)
      check(function(t) return (t:max(2)) end, x)
      check(function(t) return (t:min(1, true)) end, x)
      check(function(t) return (t:t():max(1)) end, x)
      check(function(t) return t:max() + t:min() end, x)
    end)
    it("logsumexp of large values", function()
      local x = leaf(2, 5)
      check(function(t) return (t + 500):logsumexp(2) end, x)
    end)
  end)

  describe("matrix products", function()
    local forms = {
      { "dot", { 4 }, { 4 } },
      { "vector @ matrix", { 3 }, { 3, 4 } },
      { "matrix @ vector", { 3, 4 }, { 4 } },
      { "matrix @ matrix", { 3, 4 }, { 4, 2 } },
      { "batched", { 2, 3, 4 }, { 2, 4, 2 } },
      { "broadcast batch", { 2, 1, 2, 3 }, { 3, 3, 2 } },
      { "batched @ matrix", { 2, 3, 4 }, { 4, 2 } },
      { "matrix @ batched", { 3, 4 }, { 2, 4, 2 } },
      { "vector @ batched", { 4 }, { 2, 4, 3 } },
      { "batched @ vector", { 2, 3, 4 }, { 4 } },
    }
    for _, f in ipairs(forms) do
      it("matmul " .. f[1], function()
        check(miles.matmul, leaf(table.unpack(f[2])), leaf(table.unpack(f[3])))
      end)
    end
    it("mm and bmm", function()
      check(function(a, b) return a:mm(b) end, leaf(2, 3), leaf(3, 4))
      check(function(a, b) return a:bmm(b) end, leaf(2, 2, 3), leaf(2, 3, 2))
    end)
    it("transposed, narrowed and expanded operands", function()
      check(function(a, b) return a:t():matmul(b) end, leaf(4, 3), leaf(4, 2))
      check(function(a, b) return a:matmul(b:t()) end, leaf(3, 4), leaf(2, 4))
      check(function(a, b) return a:narrow(2, 2, 3):matmul(b) end, leaf(3, 5), leaf(3, 2))
      check(function(a, b) return a:matmul(b:expand(2, 4, 3)) end, leaf(2, 2, 4), leaf(4, 3))
      check(function(a, b) return a:transpose(1, 2):matmul(b) end, leaf(3, 2, 4), leaf(4, 2))
      check(function(a, b) return a:permute(2, 1, 3, 4):matmul(b) end, leaf(2, 2, 2, 3), leaf(3, 2))
    end)
    it("linear with and without bias, 1-D and batched input", function()
      check(miles.linear, leaf(2, 3, 4), leaf(5, 4), leaf(5))
      check(F.linear, leaf(3, 4), leaf(2, 4))
      check(F.linear, leaf(4), leaf(3, 4), leaf(3))
    end)
  end)

  describe("softmax", function()
    for _, name in ipairs({ "softmax", "log_softmax" }) do
      it(name .. " over each dim of a 3-D tensor, and of a transposed input", function()
        local x = leaf(2, 3, 4)
        for d = -1, 3 do
          if d ~= 0 then
            check(function(t) return F[name](t, d) end, x)
          end
        end
        check(function(t) return F[name](t:transpose(1, 3), 2) end, x)
      end)
    end
  end)

  describe("losses", function()
    local y = int64({ 2, 5, 1, 2 })
    local cw = miles.tensor({ 0.5, 1, 2, 1.5, 0.7 }, F64)
    local cases = {
      { "mean" }, { "sum", { reduction = "sum" } }, { "none", { reduction = "none" } },
      { "weight", { weight = cw } },
      { "label smoothing", { label_smoothing = 0.2 } },
      { "label smoothing and weight", { label_smoothing = 0.1, weight = cw } },
      { "ignore_index", { ignore_index = 2 } },
      { "ignore_index, weight, smoothing, none", { ignore_index = 2, weight = cw,
        label_smoothing = 0.3, reduction = "none" } },
    }
    for _, c in ipairs(cases) do
      it("cross_entropy, " .. c[1], function()
        check(function(x) return F.cross_entropy(x, y, c[2]) end, leaf(4, 5))
      end)
      if not (c[2] and c[2].label_smoothing) then -- nll_loss has no smoothing
        it("nll_loss, " .. c[1], function()
          check(function(x) return F.nll_loss(x, y, c[2]) end, leaf(4, 5))
        end)
      end
    end
    it("cross_entropy with probability targets (gradients for both)", function()
      local t = uniform(0.1, 1, 4, 5)
      check(function(x, p) return F.cross_entropy(x, p) end, leaf(4, 5), t)
      check(function(x, p) return F.cross_entropy(x, p, { weight = cw, label_smoothing = 0.1 }) end,
        leaf(4, 5), t)
    end)
    it("cross_entropy on [N, C, d] with [N, d] targets", function()
      local y3 = int64({ { 1, 3, 2 }, { 4, 4, 1 } })
      check(function(x) return F.cross_entropy(x, y3) end, leaf(2, 4, 3))
      check(function(x) return F.cross_entropy(x, y3, { weight = miles.tensor({ 1, 2, 3, 4 }, F64),
        ignore_index = 4, label_smoothing = 0.1 }) end, leaf(2, 4, 3))
    end)
    it("cross_entropy of a transposed input", function()
      check(function(x) return F.cross_entropy(x:t(), y) end, leaf(5, 4))
    end)
    it("binary_cross_entropy_with_logits, weight and pos_weight (gradients for both)", function()
      local w = miles.tensor({ 0.5, 2, 1 }, F64)
      local pw = miles.tensor({ 3, 0.5, 1 }, F64)
      local x, t = leaf(2, 3), uniform(0, 1, 2, 3)
      check(function(a, b) return F.binary_cross_entropy_with_logits(a, b) end, x, t)
      check(function(a, b)
        return F.binary_cross_entropy_with_logits(a, b, { weight = w, pos_weight = pw, reduction = "sum" })
      end, x, t)
      check(function(a, b)
        return F.binary_cross_entropy_with_logits(a, b, { pos_weight = pw, reduction = "none" })
      end, x, t)
    end)
    it("mse_loss, all reductions", function()
      for _, r in ipairs({ "mean", "sum", "none" }) do
        check(function(a, b) return F.mse_loss(a, b, { reduction = r }) end, leaf(3, 2), leaf(3, 2))
      end
    end)
  end)

  describe("views and indexing", function()
    it("reshape and view, of contiguous and transposed inputs", function()
      check(function(t) return t:reshape(4, 3):exp() end, leaf(3, 4))
      check(function(t) return t:view(2, -1) * t:view(2, 6) end, leaf(3, 4))
      check(function(t) return t:t():reshape(-1):sigmoid() end, leaf(3, 4))
      check(function(t) return t:flatten(2, 3):tanh() end, leaf(2, 3, 2))
    end)
    it("permute, transpose, t, contiguous, clone", function()
      local w = miles.randn(4, 2, 3, F64)
      check(function(t) return t:permute(3, 1, 2) * w end, leaf(2, 3, 4))
      check(function(t) return t:transpose(1, 3):contiguous():exp() end, leaf(2, 3, 4))
      check(function(t) return t:t():clone() * t:t() end, leaf(3, 2))
    end)
    it("narrow and select, of non-contiguous inputs", function()
      check(function(t) return t:narrow(1, 2, 2):exp() end, leaf(4, 3))
      check(function(t) return t:t():narrow(2, 2, 2) * 3 end, leaf(4, 3))
      check(function(t) return t:select(2, 3):square() end, leaf(4, 3))
      check(function(t) return t:select(1, -1) + t:select(1, 1) end, leaf(4, 3))
      check(function(t) return t[2] * t[3] end, leaf(4, 3))
    end)
    it("expand, expand_as, squeeze, unsqueeze", function()
      check(function(t) return t:expand(2, 3, 4) * miles.arange(24):reshape(2, 3, 4) end, leaf(3, 1))
      check(function(t, u) return t:expand_as(u) * u end, leaf(1, 4), leaf(3, 4))
      check(function(t) return t:unsqueeze(2):expand(3, 2, 4) end, leaf(3, 4))
      check(function(t) return t:squeeze():exp() end, leaf(3, 1, 4))
      check(function(t) return t:squeeze(2):unsqueeze(-1):exp() end, leaf(3, 1, 2))
    end)
    it("cat and stack, with an input that needs no gradient", function()
      local c = miles.randn(2, 3, F64)
      check(function(a, b) return miles.cat({ a, c, b:t() }, 1) end, leaf(1, 3), leaf(3, 4))
      check(function(a, b) return miles.cat({ a, b }, 2):exp() end, leaf(2, 1), leaf(2, 3))
      check(function(a, b) return miles.stack({ a, b, a }, 2) end, leaf(2, 3), leaf(2, 3))
    end)
    it("split and chunk, pieces recombined", function()
      check(function(t)
        local p = t:split(2, 1)
        return miles.cat({ p[3] * 2, p[1]:exp(), p[2] }, 1)
      end, leaf(5, 2))
      check(function(t)
        local p = t:chunk(2, 2)
        return p[1] * p[2]
      end, leaf(3, 4))
    end)
    it("index_select and gather with repeated indices", function()
      check(function(t) return t:index_select(1, int64({ 3, 1, 3, 3 })) end, leaf(3, 2))
      check(function(t) return t:t():index_select(2, int64({ 2, 2 })) end, leaf(3, 4))
      check(function(t) return t:gather(2, int64({ { 1, 1 }, { 4, 2 }, { 3, 3 } })) end, leaf(3, 4))
      check(function(t) return t[int64({ 2, 2, 1 })] end, leaf(3, 2))
    end)
    it("masked_select and indexing by a mask, with a broadcast mask", function()
      local m = miles.tensor({ { true, false, true, true }, { false, false, true, false } })
      check(function(t) return t:masked_select(m) end, leaf(2, 4))
      check(function(t) return t:masked_select(miles.tensor({ true, false, true })) end, leaf(2, 3))
      check(function(t) return t[m]:exp() end, leaf(2, 4))
    end)
  end)

  describe("composite expressions", function()
    it("a two-layer network with a cross-entropy loss", function()
      local x = miles.randn(4, 3, F64)
      local y = int64({ 1, 2, 2, 1 })
      check(function(w1, b1, w2)
        return F.cross_entropy(F.linear(F.linear(x, w1, b1):tanh(), w2), y)
      end, leaf(5, 3), leaf(5), leaf(2, 5))
    end)
    it("layer normalisation", function()
      check(function(x, g)
        local mu = x:mean(-1, true)
        local v = x:var(-1, { keepdim = true, correction = 0 })
        return (x - mu) / (v + 1e-5):sqrt() * g
      end, leaf(3, 4), leaf(4))
    end)
    it("attention", function()
      check(function(q, k, v)
        local s = q:matmul(k:transpose(-1, -2)) / math.sqrt(4)
        return F.softmax(s, -1):matmul(v)
      end, leaf(2, 3, 4), leaf(2, 3, 4), leaf(2, 3, 2))
    end)
    it("one tensor used many times", function()
      check(function(x)
        return x * x + x:exp() * x - x:sum() * x:t():t() + miles.maximum(x, x:t())
      end, leaf(3, 3))
    end)
    it("softplus, sigmoid and where in a gated unit", function()
      check(function(a, b)
        return F.softplus(a) * b:sigmoid() + miles.where(a:gt(b), a - b, (b - a) ^ 2)
      end, leaf(3, 4), leaf(3, 4))
    end)
  end)
end)
