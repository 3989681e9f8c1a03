-- Every user-facing failure is a Lua error whose message names the op and says
-- what is wrong (never a crash, never a silent wrong answer).
local miles = require "miles"
local H = require "helpers"

local raises = H.raises

describe("shape errors", function()
  it("matmul names both shapes and the sizes that differ", function()
    raises(function() return miles.matmul(miles.zeros(3, 4), miles.zeros(5, 2)) end,
      "matmul: shapes [3,4] and [5,2] cannot be multiplied (4 ~= 5)")
    raises(function() return miles.zeros(3, 4):matmul(miles.zeros(3)) end,
      "matmul: shapes [3,4] and [3,1] cannot be multiplied (4 ~= 3)")
    raises(function() return miles.matmul(miles.zeros(2, 3, 4), miles.zeros(3, 4, 5)) end,
      "matmul: shapes [2] and [3] cannot be broadcast")
    raises(function() return miles.matmul(miles.tensor(1.0), miles.zeros(2)) end,
      "matmul: both operands need at least 1 dim, got 0 and 1")
    raises(function() return miles.mm(miles.zeros(3, 4), miles.zeros(4)) end,
      "mm: expects two 2-D tensors, got 2 and 1 dims")
    raises(function() return miles.bmm(miles.zeros(2, 3, 4), miles.zeros(3, 4, 5)) end,
      "bmm: expects two 3-D tensors with the same batch size, got [2,3,4] and [3,4,5]")
  end)

  it("broadcasting names the op, the shapes and the dim", function()
    raises(function() return miles.zeros(2, 3) + miles.zeros(4) end,
      "add: shapes [2,3] and [4] cannot be broadcast (dim 2: 3 ~= 4)")
    raises(function() return miles.zeros(2, 3) - miles.zeros(3, 3) end, "sub: shapes [2,3] and [3,3]")
    raises(function() return miles.zeros(2) / miles.zeros(3) end, "div: shapes [2] and [3]")
    raises(function() return miles.zeros(2):lt(miles.zeros(3)) end, "lt: shapes [2] and [3]")
    raises(function() return miles.maximum(miles.zeros(2), miles.zeros(3)) end, "maximum: shapes")
  end)

  it("reshape and view say which shapes do not fit", function()
    raises(function() return miles.zeros(2, 3):reshape(5) end,
      "reshape: cannot reshape [2,3] (6 elements) into [5] (5 elements)")
    raises(function() return miles.zeros(2, 3):t():view(6) end,
      "view: a tensor of shape [3,2] with these strides cannot be viewed as [6]")
  end)

  it("creation from ragged or non-numeric tables", function()
    raises(function() return miles.tensor({ { 1, 2 }, { 3 } }) end,
      "tensor: the nested tables are not rectangular (level 2 should have 2 elements)")
    raises(function() return miles.tensor({ 1, { 2 } }) end,
      "tensor: expected a number or boolean at element 2, got table")
    raises(function() return miles.tensor({ "a" }) end,
      "tensor: expected a number or boolean at element 1, got string")
    raises(function() return miles.zeros(-1) end, "sizes must be non-negative")
    raises(function() return miles.zeros(1, 1, 1, 1, 1, 1, 1, 1, 1) end, "too many dims (at most 8)")
  end)
end)

describe("size limits", function()
  it("refuse shapes whose element count does not fit in 64 bits", function()
    local big = 2 ^ 32 // 1
    raises(function() return miles.zeros(big, big) end,
      "zeros: a tensor of shape [4294967296,4294967296] has too many elements")
    raises(function() return miles.zeros(1):expand(big, big) end, "expand: a tensor of shape")
    raises(function() return miles.eye(big, big) end, "eye: a tensor of shape")
    raises(function() return miles.zeros(4):reshape(big, big, -1) end, "reshape: too many elements in the new shape")
    raises(function() return miles.zeros(4):narrow(1, 2, math.maxinteger) end,
      "narrow: elements 2 to 9223372036854775807 are out of range for dim 1 of size 4")
    raises(function() return miles.zeros(3):narrow(1, math.mininteger, 1) end,
      "narrow: start -9223372036854775808 is out of range for dim 1 of size 3")
    raises(function() return miles.zeros(3)[math.mininteger] end,
      "select: index -9223372036854775808 is out of range for dim 1 of size 3")
    raises(function() return miles.zeros(3)[miles.tensor({ math.mininteger })] end,
      "index_select: index -9223372036854775808 is out of range for a dim of size 3")
    raises(function() return miles.arange(0, 1e300, 1e-300) end, "arange: inf elements is too many")
    assert.equal(1, #miles.zeros(4):split(math.maxinteger))
  end)
end)

describe("dim errors", function()
  it("say which dim is out of range, in 1-based numbering", function()
    local x = miles.zeros(2, 3)
    raises(function() return x:sum(3) end, "sum: dim 3 out of range for a tensor of 2 dims")
    raises(function() return x:sum(-3) end, "sum: dim -3 out of range for a tensor of 2 dims")
    raises(function() return x:transpose(1, 3) end, "transpose: dim 3 out of range")
    raises(function() return x:softmax(3) end, "softmax: dim 3 out of range")
    raises(function() return x:size(3) end, "size: dim 3 out of range")
    raises(function() return x:select(3, 1) end, "select: dim 3 out of range")
    raises(function() return x:narrow(3, 1, 1) end, "narrow: dim 3 out of range")
    raises(function() return x:squeeze(3) end, "squeeze: dim 3 out of range")
    raises(function() return x:unsqueeze(4) end, "unsqueeze: dim 4 out of range for a tensor of 3 dims")
    raises(function() return x:flatten(3) end, "flatten: dim 3 out of range")
    raises(function() return x:argmax(3) end, "max: dim 3 out of range")
    raises(function() return miles.cat({ x, x }, 3) end, "cat: dim 3 out of range")
    raises(function() return miles.tensor(1.0):sum(1) end, "sum: dim 1 out of range for a tensor of 0 dims")
  end)

  it("refuse dim 0, since dims are numbered from 1", function()
    raises(function() return miles.zeros(2, 3):sum(0) end, "dims are numbered from 1")
    raises(function() return miles.zeros(2, 3):transpose(0, 1) end, "dims are numbered from 1")
  end)
end)

describe("dtype errors", function()
  it("name the function and the unknown dtype", function()
    raises(function() return miles.zeros(2, { dtype = "float16" }) end,
      "zeros: unknown dtype 'float16' (float32, float64, int64, uint8 or bool)")
    raises(function() return miles.tensor({ 1 }, { dtype = "int32" }) end, "tensor: unknown dtype 'int32'")
    raises(function() return miles.zeros(2):to("half") end, "to: unknown dtype 'half'")
    raises(function() return miles.zeros(2):to(5) end, "to: dtype must be a string")
    raises(function() return miles.arange(3, { dtype = "bogus" }) end, "arange: unknown dtype 'bogus'")
    raises(function() return miles.ones(2, { dtype = 3 }) end, "ones: dtype must be a string")
  end)

  it("refuse ops that need floats", function()
    raises(function() return miles.matmul(miles.zeros(2, 2, { dtype = "int64" }), miles.zeros(2, 2)) end,
      "matmul: the first operand must be float32, float64 or bfloat16, got int64")
    raises(function() return miles.matmul(miles.zeros(2, 2), miles.zeros(2, 2, { dtype = "float64" })) end,
      "matmul: operands have different dtypes (float32 and float64)")
    raises(function() return miles.zeros(2, { dtype = "int64" }):mean() end,
      "mean: input must be float32, float64 or bfloat16, got int64")
    raises(function() return miles.rand(2, { dtype = "int64" }) end,
      "rand: dtype must be float32, float64 or bfloat16, got int64")
    raises(function() return miles.where(miles.zeros(2), miles.zeros(2), 2) end,
      "where: the condition must be a bool tensor, got float32")
  end)
end)

describe("argument type errors", function()
  it("say a miles.Tensor was expected and what came instead", function()
    raises(function() return miles.matmul(miles.zeros(2, 2), 3) end,
      "bad argument #2 to 'matmul' (miles.Tensor expected, got number)")
    raises(function() return miles.exp("x") end, "miles.Tensor expected, got string")
    raises(function() return miles.zeros(2):copy_({}) end, "miles.Tensor expected, got table")
    raises(function() return miles.cat({ miles.zeros(2), 3 }) end, "element 2 is not a tensor")
    raises(function() return miles.zeros(2) + "x" end, "number expected, got string")
    raises(function() return miles.tensor("a") end, "table expected, got string")
  end)

  it("say what is wrong with indices", function()
    local x = miles.zeros(3)
    raises(function() return x[4] end, "select: index 4 is out of range for dim 1 of size 3")
    raises(function() return x[{}] end, "index: tensors are indexed by an integer, a bool mask or an int64 tensor")
    raises(function() return x[miles.tensor({ 1.0 })] end, "indices must be an int64 tensor, got float32")
    raises(function() return x:gather(1, miles.tensor({ 4 })) end, "gather: index 4 is out of range for a dim of size 3")
  end)

  it("refuse bad creation arguments", function()
    raises(function() return miles.arange(0, 1, 0) end, "arange: invalid range (start 0, end 1, step 0)")
    raises(function() return miles.linspace(0, 1, -1) end, "linspace: the number of steps must be non-negative, got -1")
    raises(function() return miles.eye(-1) end, "eye: sizes must be non-negative")
    raises(function() return miles.randint(5, 5, { 2 }) end, "randint: high (5) must be greater than low (5)")
    raises(function() return miles.randperm(-1) end, "randperm: n must be non-negative, got -1")
    raises(function() return miles.zeros(2, { device = "tpu" }) end, "zeros: unknown device 'tpu'")
    raises(function() return miles.zeros(2, "float64") end,
      "zeros: unexpected argument #2 (string); sizes are integers and the options a table")
    raises(function() return miles.ones({ 2 }, { dtype = "int64" }, 3) end, "ones: unexpected argument #3 (number)")
    raises(function() return miles.rand(2, miles.zeros(1)) end, "rand: unexpected argument #2 (userdata)")
    raises(function() return miles.full({ 2 }, "x") end, "full: the value must be a number or a boolean, not string")
    raises(function() return miles.full(2, 3, "x") end, "full: unexpected argument #3 (string)")
    -- the function is named even when called without a name
    local ok, msg = pcall(miles.zeros, 2, { dtype = "x" })
    assert.is_false(ok)
    assert.matches("zeros: unknown dtype 'x'", msg, 1, true)
  end)

  it("refuse bad assigned values and masks that do not fit", function()
    local x = miles.zeros(3)
    raises(function() x[1] = "a" end, "assignment: the value must be a number, a boolean or a tensor, not string")
    raises(function() x[x:gt(0)] = {} end, "assignment: the value must be a number, a boolean or a tensor, not table")
    raises(function() x[miles.tensor({ { true, false, true } })] = 1 end,
      "assignment: a mask of shape [1,3] does not fit a tensor of shape [3]")
    raises(function() x:fill_("a") end, "fill_: the value must be a number or a boolean, not string")
    assert.same({ 0, 0, 0 }, x:totable())
  end)
end)

describe("autograd errors", function()
  it("only float tensors can require gradients", function()
    raises(function() return miles.zeros(2, { dtype = "int64", requires_grad = true }) end,
      "zeros: only float tensors can require gradients, not int64")
    raises(function() return miles.tensor({ 1, 2 }, { requires_grad = true }) end,
      "tensor: only float tensors can require gradients, not int64")
    raises(function() return miles.arange(3, { requires_grad = true }) end,
      "arange: only float tensors can require gradients, not int64")
    raises(function()
      local t = miles.zeros(2, { dtype = "int64" })
      t.requires_grad = true
    end, "requires_grad: only float tensors can require gradients, not int64")
    raises(function() return miles.zeros(2, { dtype = "bool" }):requires_grad_() end,
      "requires_grad_: only float tensors can require gradients, not bool")
  end)

  it("leaves that require grad cannot be changed in place while recording", function()
    local w = miles.ones(2, { requires_grad = true })
    raises(function() w:add_(1) end, "add_: a leaf tensor that requires grad cannot be changed in place")
    raises(function() w:mul_(2) end, "mul_: a leaf tensor that requires grad")
    raises(function() w:fill_(0) end, "fill_: a leaf tensor that requires grad")
    raises(function() w:zero_() end, "a leaf tensor that requires grad")
    raises(function() w:copy_(miles.zeros(2)) end, "copy_: a leaf tensor that requires grad")
    raises(function() w[1] = 5 end, "assignment: a leaf tensor that requires grad")
    raises(function() w[w:gt(0)] = 5 end, "assignment: a leaf tensor that requires grad")
    assert.same({ 1, 1 }, w:totable()) -- nothing was written
    -- under no_grad (an optimizer step) it is allowed
    miles.no_grad(function() w:add_(1) end)
    assert.same({ 2, 2 }, w:totable())
  end)

  it("results of recorded ops cannot be changed in place", function()
    local w = miles.ones(2, { requires_grad = true })
    local y = w * 2
    raises(function() y:add_(1) end, "add_: in-place changes to a tensor computed with gradients are not supported")
    raises(function() y[1] = 0 end, "assignment: in-place changes")
  end)

  it("grad must match the tensor", function()
    local w = miles.ones(2, { requires_grad = true })
    raises(function() w.grad = miles.zeros(3) end, "grad: must match the tensor's shape and dtype")
    raises(function() w.grad = miles.zeros(2, { dtype = "float64" }) end, "grad: must match")
    raises(function() w.grad = w end, "grad: a tensor cannot be its own gradient")
    raises(function() w.shape = 1 end, "cannot set field 'shape' of a tensor")
  end)
end)

describe("released tensors", function()
  it("raise a clear error when used after :free()", function()
    local t = miles.ones(2, 3)
    local v = t:t()
    t:free()
    raises(function() return t:shape() end, "shape: the tensor was released")
    raises(function() return t:sum() end, "sum: the tensor was released")
    raises(function() return t + 1 end, "add: the tensor was released")
    raises(function() return 1 + t end, "add: the tensor was released")
    raises(function() return miles.matmul(v, t) end, "matmul: the tensor was released")
    raises(function() return t[1] end, "the tensor was released")
    raises(function() t[1] = 0 end, "the tensor was released")
    raises(function() return t.grad end, "the tensor was released")
    raises(function() return miles.cat({ v, t }) end, "cat: the tensor was released")
    raises(function() return #t end, "the tensor was released")
    assert.is_true(miles.is_tensor(t))
    -- freeing twice is harmless, and views keep the storage alive
    t:free()
    assert.same({ { 1, 1 }, { 1, 1 }, { 1, 1 } }, v:totable())
  end)

  it("raise a clear error when used after a <close> variable goes out of scope", function()
    local escaped
    do
      local t <close> = miles.full({ 2 }, 4)
      escaped = t
      assert.same({ 4, 4 }, t:totable())
    end
    raises(function() return escaped:totable() end, "totable: the tensor was released")
    raises(function() return escaped:item() end, "item: the tensor was released")
    raises(function() return escaped * 2 end, "mul: the tensor was released")
  end)

  it("release even when the scope is left by an error", function()
    local escaped
    local ok = pcall(function()
      local t <close> = miles.zeros(3)
      escaped = t
      error("boom")
    end)
    assert.is_false(ok)
    raises(function() return escaped:numel() end, "numel: the tensor was released")
  end)
end)

describe("errors leave the state usable", function()
  it("a failed op does not corrupt its inputs or later ops", function()
    local x = miles.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = "float64" })
    for _ = 1, 3 do
      pcall(function() return miles.matmul(x, miles.zeros(3, 3, { dtype = "float64" })) end)
      pcall(function() return x + miles.zeros(3, { dtype = "float64" }) end)
      pcall(function() return x:view(3) end)
    end
    assert.same({ { 7, 10 }, { 15, 22 } }, miles.matmul(x, x):totable())
  end)

  it("error messages with % in them are not treated as formats", function()
    raises(function() return miles.zeros(2, { dtype = "%s%d%n" }) end, "unknown dtype '%s%d%n'")
  end)
end)
