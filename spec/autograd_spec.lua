-- The autograd engine: accumulation, explicit gradients, retain_graph, shared
-- subgraphs, deep graphs, no_grad, detach, the rules for requires_grad, in-place
-- checks, the dtype and shape of .grad, aliasing, and memory release.
local miles = require "miles"
local H = require "helpers"

local F64 = { dtype = "float64" }

local function leaf(values, dtype)
  return miles.tensor(values, { dtype = dtype or "float64", requires_grad = true })
end

--- Live bytes of CPU tensors after a full collection.
local function live_bytes()
  collectgarbage()
  collectgarbage()
  return miles.memory().cpu.live_bytes
end

describe("autograd", function()
  describe("accumulation and explicit gradients", function()
    it("accumulates gradients over two backward calls, and .grad = nil resets", function()
      local x = leaf({ 1, 2, 3 })
      ;(x * x):sum():backward()
      H.assert_close(x.grad, { 2, 4, 6 }, 0, 0)
      ;(x * 3):sum():backward()
      H.assert_close(x.grad, { 5, 7, 9 }, 0, 0)
      x.grad = nil
      assert.is_nil(x.grad)
      ;(x:exp()):sum():backward()
      H.assert_close(x.grad, { math.exp(1), math.exp(2), math.exp(3) }, 1e-15, 0)
    end)

    it("backward with an explicit gradient (vector-Jacobian product)", function()
      local x = leaf({ { 1, 2 }, { 3, 4 } })
      local g = miles.tensor({ { 1, -1 }, { 0.5, 2 } }, F64)
      local y = x * x
      y:backward(g)
      H.assert_close(x.grad, { { 2, -4 }, { 3, 16 } }, 0, 0)
    end)

    it("converts an explicit gradient to the root's dtype", function()
      local x = leaf({ 1, 2 }, "float32")
      local y = x * 2
      y:backward(miles.tensor({ 1, 3 }, F64))
      assert.are.equal("float32", x.grad:dtype())
      H.assert_close(x.grad, { 2, 6 }, 0, 0)
    end)

    it("backward of a leaf root takes the gradient itself", function()
      local x = leaf({ 1, 2 })
      x:backward(miles.tensor({ 4, 5 }, F64))
      H.assert_close(x.grad, { 4, 5 }, 0, 0)
    end)

    it("refuses an implicit gradient for a non-scalar and a gradient of the wrong shape", function()
      local x = leaf({ 1, 2, 3 })
      local y = x * 2
      local e = H.error_of(y.backward, y)
      assert.matches("one element", e, 1, true)
      assert.matches("[3]", e, 1, true)
      e = H.error_of(y.backward, y, miles.ones(2, F64))
      assert.matches("gradient of shape [2] for a tensor of shape [3]", e, 1, true)
      assert.is_nil(x.grad)
    end)

    it("refuses backward on a tensor that does not require grad", function()
      local t = miles.tensor({ 1, 2 }, F64)
      assert.matches("does not require grad", H.error_of(function() t:sum():backward() end))
    end)

    it("leaves no .grad on non-leaves and inputs that do not require grad", function()
      local x = leaf({ 1, 2 })
      local c = miles.tensor({ 3, 4 }, F64)
      local y = x * c
      y:sum():backward()
      assert.is_nil(y.grad)
      assert.is_nil(c.grad)
      H.assert_close(x.grad, { 3, 4 }, 0, 0)
    end)
  end)

  describe("retain_graph", function()
    it("a retained graph can run backward again; then it is freed", function()
      local x = leaf({ 1, 2 })
      local y = (x * x):sum()
      y:backward({ retain_graph = true })
      y:backward(nil, { retain_graph = true })
      y:backward()
      H.assert_close(x.grad, { 6, 12 }, 0, 0)
      local e = H.error_of(y.backward, y)
      assert.are.equal(1, e:find("mul: trying to backward through the graph a second time", 1, true))
      assert.matches("retain_graph = true", e, 1, true)
      H.assert_close(x.grad, { 6, 12 }, 0, 0)
    end)

    it("names the op whose saved tensors were freed", function()
      local x = leaf({ 0.5, 2 })
      local y = x:log():sum()
      y:backward()
      local e = H.error_of(y.backward, y)
      assert.matches("log: trying to backward", e, 1, true)
    end)

    it("rejects options that are not a table", function()
      local x = leaf({ 1 })
      local y = x * 2
      assert.matches("options", H.error_of(y.backward, y, nil, true))
    end)
  end)

  describe("graph shapes", function()
    it("a diamond: one tensor feeding two branches that meet again", function()
      local x = leaf({ 1, 2, 3 })
      local a = x * 2
      local b = x:exp()
      local c = a * b + a -- d/dx (2x e^x + 2x) = 2 e^x + 2x e^x + 2
      c:sum():backward()
      local want = {}
      for i, v in ipairs({ 1, 2, 3 }) do want[i] = 2 * math.exp(v) + 2 * v * math.exp(v) + 2 end
      H.assert_close(x.grad, want, 1e-14, 0)
    end)

    it("one tensor used many times, by one op and by many", function()
      local x = leaf({ 1, -2 })
      local y = x
      for _ = 1, 99 do y = y + x end
      y:sum():backward()
      H.assert_close(x.grad, { 100, 100 }, 0, 0)
      x.grad = nil
      ;(x * x * x):sum():backward()
      H.assert_close(x.grad, { 3, 12 }, 0, 0)
    end)

    it("a chain of 50000 ops: backward and release without stack overflow", function()
      local before = live_bytes()
      local x = leaf({ 1, 2 })
      local y = x
      for _ = 1, 50000 do y = y * 1.00002 end
      y:sum():backward()
      local f = 1.00002 ^ 50000
      H.assert_close(x.grad, { f, f }, 1e-11, 0)
      H.assert_close(y, { f, 2 * f }, 1e-11, 0)
      y = nil
      x = nil
      assert.are.equal(before, live_bytes())
    end)

    it("a chain of 50000 ops that is never run backward is released too", function()
      local before = live_bytes()
      local y = leaf({ 1, 2 })
      for _ = 1, 50000 do y = y:tanh() end
      y = nil
      assert.are.equal(before, live_bytes())
    end)
  end)

  describe("no_grad and enable_grad", function()
    it("records nothing inside no_grad and passes values through", function()
      local x = leaf({ 1, 2 })
      local y, n = miles.no_grad(function(a, k)
        assert.is_false(miles.is_grad_enabled())
        return a * k, 7
      end, x, 3)
      assert.are.equal(7, n)
      assert.is_false(y.requires_grad)
      assert.is_nil(y.grad_fn)
      assert.is_true(y.is_leaf)
      H.assert_close(y, { 3, 6 }, 0, 0)
      assert.is_true(miles.is_grad_enabled())
    end)

    it("restores the mode when the function raises", function()
      local ok, e = pcall(miles.no_grad, function() error("boom") end)
      assert.is_false(ok)
      assert.matches("boom", tostring(e))
      assert.is_true(miles.is_grad_enabled())
      local x = leaf({ 1 })
      assert.is_true((x * 2).requires_grad)
    end)

    it("nests: enable_grad inside no_grad records, and both restore", function()
      local x = leaf({ 2 })
      local inner, outer
      miles.no_grad(function()
        inner = miles.enable_grad(function() return x * x end)
        outer = x * x
        assert.is_false(miles.is_grad_enabled())
      end)
      assert.is_true(inner.requires_grad)
      assert.is_false(outer.requires_grad)
      inner:sum():backward()
      H.assert_close(x.grad, { 4 }, 0, 0)
    end)

    it("set_grad_enabled returns the previous mode", function()
      assert.is_true(miles.set_grad_enabled(false))
      local x = leaf({ 1 })
      local y = x * 2
      assert.is_false(miles.set_grad_enabled(true))
      assert.is_false(y.requires_grad)
    end)
  end)

  describe("detach and requires_grad", function()
    it("detach shares the data and cuts the graph", function()
      local x = leaf({ 1, 2 })
      local y = x * 3
      local d = y:detach()
      assert.is_false(d.requires_grad)
      assert.is_true(d.is_leaf)
      assert.is_true(d:shares_storage(y))
      H.assert_close(d, { 3, 6 }, 0, 0)
      ;(d * x):sum():backward()
      H.assert_close(x.grad, { 3, 6 }, 0, 0)
    end)

    it("propagates requires_grad from any input, and reports grad_fn and is_leaf", function()
      local x = leaf({ 1, 2 })
      local c = miles.tensor({ 3, 4 }, F64)
      assert.is_true(x.is_leaf)
      assert.is_nil(x.grad_fn)
      local y = c * x
      assert.is_true(y.requires_grad)
      assert.is_false(y.is_leaf)
      assert.are.equal("mul", y.grad_fn)
      assert.is_false((c + c).requires_grad)
      assert.are.equal("sum", y:sum().grad_fn)
      assert.is_true(miles.cat({ c, x }).requires_grad)
      assert.is_true(miles.where(c:gt(3), c, x).requires_grad)
    end)

    it("results that are integers or booleans never require grad", function()
      local x = leaf({ { 1, 5 }, { 3, 2 } })
      assert.is_false(x:gt(2).requires_grad)
      assert.is_false(x:argmax(2).requires_grad)
      local v, i = x:max(2)
      assert.is_true(v.requires_grad)
      assert.is_false(i.requires_grad)
      assert.is_false(x:to("int64").requires_grad)
      assert.is_false(x:eq(x).requires_grad)
    end)

    it("integer and bool tensors cannot require grad", function()
      local i = miles.tensor({ 1, 2 })
      assert.are.equal("int64", i:dtype())
      assert.matches("only float tensors", H.error_of(function() i.requires_grad = true end))
      assert.matches("only float tensors", H.error_of(function() i:requires_grad_() end))
      assert.matches("only float tensors",
        H.error_of(miles.zeros, 3, { dtype = "int64", requires_grad = true }))
      assert.matches("only float tensors",
        H.error_of(miles.tensor, { true }, { requires_grad = true }))
      assert.is_false(i.requires_grad)
      assert.is_false((i * 2).requires_grad)
    end)

    it("requires_grad can be turned off on leaves only", function()
      local x = leaf({ 1 })
      local y = x * 2
      assert.matches("detach", H.error_of(function() y.requires_grad = false end))
      x.requires_grad = false
      assert.is_false((x * 2).requires_grad)
      x:requires_grad_()
      assert.is_true((x * 2).requires_grad)
    end)
  end)

  describe("in-place modification", function()
    it("of a tensor saved by mul is detected at backward", function()
      local x = leaf({ 1, 2 })
      local c = miles.tensor({ 3, 4 }, F64)
      local y = (x * c):sum()
      c:add_(1)
      local e = H.error_of(y.backward, y)
      assert.matches("mul: a tensor needed for the gradient was modified in place", e, 1, true)
    end)

    it("of a leaf under no_grad after log used it is detected", function()
      local x = leaf({ 1, 2 })
      local y = x:log():sum()
      miles.no_grad(function() x:mul_(2) end)
      assert.matches("log: a tensor needed for the gradient was modified in place",
        H.error_of(y.backward, y), 1, true)
    end)

    it("through a detached view of a saved output is detected", function()
      local x = leaf({ 1, 2 })
      local e = x:exp()
      local y = e:sum()
      e:detach():fill_(0)
      assert.matches("exp: a tensor needed for the gradient was modified",
        H.error_of(y.backward, y), 1, true)
    end)

    it("of a tensor no gradient needs is allowed", function()
      local x = leaf({ 1, 2 })
      local c = miles.tensor({ 3, 4 }, F64)
      local y = (x + c):sum()
      c:add_(1)
      y:backward()
      H.assert_close(x.grad, { 1, 1 }, 0, 0)
    end)

    it("of a tensor outside the graph with an operand that requires grad is refused", function()
      local x = leaf({ 1, 2 })
      local c = miles.tensor({ 3, 4 }, F64)
      assert.matches("add_: an operand requires grad", H.error_of(function() c:add_(x) end), 1, true)
      H.assert_close(c, { 3, 4 }, 0, 0)
      miles.no_grad(function() c:add_(x) end)
      H.assert_close(c, { 4, 6 }, 0, 0)
    end)

    it("of a leaf that requires grad, or of a graph tensor, is refused while recording", function()
      local x = leaf({ 1, 2 })
      assert.matches("leaf tensor that requires grad", H.error_of(function() x:add_(1) end))
      assert.matches("in-place changes to a tensor computed with gradients", H.error_of(function() (x * 2):mul_(2) end), 1, true)
    end)
  end)

  describe(".grad", function()
    it("has the leaf's dtype and shape after broadcasting and dtype promotion", function()
      local a = miles.randn(3, 1, { dtype = "float32", requires_grad = true })
      local b = miles.randn(2, 3, 4, { dtype = "float64", requires_grad = true })
      local s = miles.tensor(2.0, { dtype = "float32", requires_grad = true })
      ;(a * b * s):sum():backward()
      assert.are.equal("float32", a.grad:dtype())
      assert.are.same({ 3, 1 }, a.grad:shape())
      assert.are.equal("float64", b.grad:dtype())
      assert.are.same({ 2, 3, 4 }, b.grad:shape())
      assert.are.equal("float32", s.grad:dtype())
      assert.are.same({}, s.grad:shape())
      -- d/da = s * sum of b over the broadcast dims
      local want = (b:detach() * 2):sum({ 1, 3 }):reshape(3, 1)
      H.assert_close(a.grad, want, 1e-6, 1e-6)
    end)

    it("is not an alias of a gradient the user passed and still holds", function()
      local x = leaf({ { 1, 2, 3 }, { 4, 5, 6 } })
      local g = miles.ones(6, F64)
      x:reshape(6):backward(g)
      g:mul_(5)
      H.assert_close(x.grad, miles.ones(2, 3, F64), 0, 0)
      assert.is_false(x.grad:shares_storage(g))
      x.grad:add_(1)
      H.assert_close(g, miles.full(6, 5.0, F64), 0, 0)

      local z = leaf({ 1, 2 })
      local gz = miles.tensor({ 7, 8 }, F64)
      z:backward(gz)
      gz:zero_()
      H.assert_close(z.grad, { 7, 8 }, 0, 0)

      local w = leaf({ 1, 2 })
      local gw = miles.tensor({ 1, 1 }, F64)
      w:clone():backward(gw)
      assert.is_false(w.grad:shares_storage(gw))
    end)

    it("a .grad the user holds is not changed by later accumulation", function()
      local x = leaf({ 1, 2 })
      ;(x * 2):sum():backward()
      local held = x.grad
      ;(x * 3):sum():backward()
      H.assert_close(held, { 2, 2 }, 0, 0)
      H.assert_close(x.grad, { 5, 5 }, 0, 0)
    end)

    it("can be set, to a tensor of the leaf's shape and dtype only", function()
      local x = leaf({ 1, 2 })
      x.grad = miles.tensor({ 1, 1 }, F64)
      ;(x * 2):sum():backward()
      H.assert_close(x.grad, { 3, 3 }, 0, 0)
      assert.matches("shape and dtype", H.error_of(function() x.grad = miles.ones(3, F64) end))
      assert.matches("shape and dtype", H.error_of(function() x.grad = miles.ones(2) end))
    end)
  end)

  describe("memory", function()
    it("is released after backward and after the tensors are dropped", function()
      local before = live_bytes()
      local x = miles.randn(64, 64, { dtype = "float64", requires_grad = true })
      local y = x
      for _ = 1, 5 do y = y:exp():tanh() end
      local loss = y:sum()
      y = nil
      local held = live_bytes() -- the saved outputs of exp and tanh
      loss:backward()
      local after = live_bytes()
      -- the 10 saved 32 KiB outputs are freed; x, its grad and the loss remain
      assert.is_true(held - after >= 9 * 64 * 64 * 8,
        string.format("held %d, after backward %d", held, after))
      assert.is_true(after - before <= 2 * 64 * 64 * 8 + 1024)
      loss, x = nil, nil
      assert.are.equal(before, live_bytes())
    end)

    it("is released when backward fails", function()
      local before = live_bytes()
      local x = miles.randn(32, 32, { dtype = "float64", requires_grad = true })
      local c = miles.randn(32, 32, F64)
      local y = (x * c):exp():sum()
      c:add_(1)
      assert.matches("modified in place", H.error_of(y.backward, y))
      x, c, y = nil, nil, nil
      assert.are.equal(before, live_bytes())
    end)

    it("retain_graph keeps the saved tensors until the graph is dropped", function()
      local before = live_bytes()
      local x = miles.randn(32, 32, { dtype = "float64", requires_grad = true })
      local loss = x:exp():sum()
      loss:backward({ retain_graph = true })
      local kept = live_bytes()
      loss:backward()
      assert.is_true(kept - live_bytes() >= 32 * 32 * 8)
      H.assert_close(x.grad, x:detach():exp() * 2, 1e-15, 0)
      x, loss = nil, nil
      assert.are.equal(before, live_bytes())
    end)
  end)
end)
