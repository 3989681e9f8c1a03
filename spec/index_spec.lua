-- Indexing (x[i], x[mask], x[idx] and assignment), joining and splitting (cat,
-- stack, split, chunk) and the index ops (index_select, gather, masked_select,
-- nonzero). Indices are 1-based; out-of-range indices raise errors that say so.
local miles = require "miles"
local H = require "helpers"

local function seq(...)
  local shape = { ... }
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return miles.arange(n):reshape(shape)
end

local function idx(t) return miles.tensor(t, { dtype = "int64" }) end

describe("x[i]", function()
  it("selects along the first dim, 1-based", function()
    local x = seq(3, 4)
    assert.same({ 0, 1, 2, 3 }, x[1]:totable())
    assert.same({ 8, 9, 10, 11 }, x[3]:totable())
    assert.equal(6, x[2][3]:item())
    assert.same({}, x[2][3]:shape())
    assert.equal(5, seq(6)[6]:item())
  end)

  it("counts negative indices from the end", function()
    local x = seq(3, 4)
    assert.same({ 8, 9, 10, 11 }, x[-1]:totable())
    assert.same({ 0, 1, 2, 3 }, x[-3]:totable())
    assert.equal(10, x[-1][-2]:item())
  end)

  it("accepts float keys with an integral value", function()
    assert.same({ 4, 5, 6, 7 }, seq(3, 4)[2.0]:totable())
    assert.matches("index: 1.5", H.error_of(function() return seq(3)[1.5] end), 1, true)
  end)

  it("raises clear errors for indices out of range", function()
    local x = seq(3, 4)
    assert.matches("select: index 4 is out of range for dim 1 of size 3",
      H.error_of(function() return x[4] end), 1, true)
    assert.matches("select: index -4 is out of range for dim 1 of size 3",
      H.error_of(function() return x[-4] end), 1, true)
    assert.matches("select: index 5 is out of range for dim 1 of size 4",
      H.error_of(function() return x[1][5] end), 1, true)
    assert.matches("index: indices are 1-based", H.error_of(function() return x[0] end), 1, true)
    assert.matches("index: cannot index a 0-dim tensor; use :item()",
      H.error_of(function() return x[1][1][1] end), 1, true)
    assert.matches("select: index 1 is out of range for dim 1 of size 0",
      H.error_of(function() return miles.zeros(0)[1] end), 1, true)
    assert.matches("index: tensors are indexed by an integer, a bool mask or an int64 tensor, not a table",
      H.error_of(function() return x[{ 1, 2 }] end), 1, true)
  end)
end)

describe("x[mask] and x[idx]", function()
  it("x[mask] picks the elements where the mask is true, in row-major order", function()
    local x = seq(2, 3)
    local m = x:gt(1):logical_and(x:lt(5))
    local r = x[m]
    assert.same({ 3 }, r:shape())
    assert.same({ 2, 3, 4 }, r:totable())
    assert.same({ 0 }, x[x:gt(100)]:shape())
    assert.same({ 1, 3, 5 }, x[miles.tensor({ { false, true, false }, { true, false, true } })]:totable())
  end)

  it("x[mask] broadcasts a smaller mask as masked_select does", function()
    local x = seq(2, 3)
    assert.same({ 0, 2, 3, 5 }, x[miles.tensor({ true, false, true })]:totable())
  end)

  it("x[idx] selects rows by a 1-based int64 tensor, repeats allowed", function()
    local x = seq(3, 2)
    assert.same({ { 4, 5 }, { 0, 1 }, { 4, 5 } }, x[idx({ 3, 1, 3 })]:totable())
    assert.same({ 0, 2 }, x[idx({})]:shape())
    assert.is_false(x[idx({ 1 })]:shares_storage(x))
    assert.same({ 30, 10 }, miles.tensor({ 10, 20, 30 })[idx({ 3, 1 })]:totable())
  end)

  it("x[idx] refuses out-of-range and non-int64 indices", function()
    local x = seq(3, 2)
    assert.matches("index_select: index 4 is out of range for a dim of size 3",
      H.error_of(function() return x[idx({ 1, 4 })] end), 1, true)
    assert.matches("index_select: index 0 is out of range for a dim of size 3",
      H.error_of(function() return x[idx({ 0 })] end), 1, true)
    assert.matches("indices must be an int64 tensor, got float32",
      H.error_of(function() return x[miles.tensor({ 1.0 })] end), 1, true)
  end)
end)

describe("assignment", function()
  it("x[i] = number fills a row, x[i] = tensor copies (with broadcasting)", function()
    local x = miles.zeros(3, 2)
    x[2] = 5
    x[-1] = miles.tensor({ 1, 2 })
    assert.same({ { 0, 0 }, { 5, 5 }, { 1, 2 } }, x:totable())
    x[1] = miles.tensor(7)
    assert.same({ 7, 7 }, x[1]:totable())
    x[1][2] = -1
    assert.equal(-1, x[1][2]:item())
  end)

  it("converts the assigned values to the tensor's dtype", function()
    local i = miles.zeros(3, { dtype = "int64" })
    i[1] = 2.9
    i[2] = miles.tensor(-1.5)
    i[3] = true
    assert.same({ 2, -1, 1 }, i:totable())
    local b = miles.zeros(2, { dtype = "bool" })
    b[2] = 3
    assert.same({ false, true }, b:totable())
  end)

  it("x[mask] = v writes where the mask is true", function()
    local x = seq(2, 3)
    x[x:gt(3)] = 0
    assert.same({ { 0, 1, 2 }, { 3, 0, 0 } }, x:totable())
    local y = miles.zeros(2, 3)
    y[miles.tensor({ true, false, true })] = miles.tensor({ 1, 2, 3 }, { dtype = "float32" })
    assert.same({ { 1, 0, 3 }, { 1, 0, 3 } }, y:totable())
    local f = miles.tensor({ 1.5, -2.5, 3.5 })
    f[f:lt(0)] = 0
    assert.same({ 1.5, 0, 3.5 }, f:totable())
  end)

  it("x[mask] = v writes through a view into its base", function()
    local x = seq(3, 3)
    local col = x:select(2, 2)
    col[col:gt(2)] = -1
    assert.same({ { 0, 1, 2 }, { 3, -1, 5 }, { 6, -1, 8 } }, x:totable())
  end)

  it("raises clear errors", function()
    local x = miles.zeros(3, 2)
    assert.matches("select: index 4 is out of range for dim 1 of size 3",
      H.error_of(function() x[4] = 1 end), 1, true)
    assert.matches("assignment: indices are 1-based", H.error_of(function() x[0] = 1 end), 1, true)
    assert.matches("copy: cannot expand [3] to [2]",
      H.error_of(function() x[1] = miles.zeros(3) end), 1, true)
    assert.matches("assignment: cannot index a 0-dim tensor",
      H.error_of(function() local s = miles.tensor(1); s[1] = 2 end), 1, true)
    assert.matches("assignment: index by an integer or a bool mask",
      H.error_of(function() x[idx({ 1 })] = 1 end), 1, true)
    assert.matches("cannot set field 'foo' of a tensor", H.error_of(function() x.foo = 1 end), 1, true)
  end)
end)

describe("cat and stack", function()
  it("cat joins along an existing dim", function()
    local a, b = seq(2, 2), seq(1, 2) + 10
    assert.same({ { 0, 1 }, { 2, 3 }, { 10, 11 } }, miles.cat({ a, b }):totable())
    assert.same({ { 0, 1 }, { 2, 3 }, { 10, 11 } }, miles.cat({ a, b }, 1):totable())
    local c = miles.cat({ a, seq(2, 1) + 20 }, 2)
    assert.same({ { 0, 1, 20 }, { 2, 3, 21 } }, c:totable())
    assert.same(c:totable(), miles.cat({ a, seq(2, 1) + 20 }, -1):totable())
    assert.same({ 1, 2, 3 }, miles.cat({ miles.tensor({ 1 }), miles.tensor({ 2, 3 }) }):totable())
    assert.same({ 5 }, miles.cat({ miles.tensor({ 5 }) }):totable())
  end)

  it("cat promotes dtypes and copies (no shared storage)", function()
    local r = miles.cat({ miles.tensor({ 1, 2 }), miles.tensor({ 0.5 }) })
    assert.equal("float32", r:dtype())
    assert.same({ 1, 2, 0.5 }, r:totable())
    local a = miles.tensor({ 1, 2 })
    assert.is_false(miles.cat({ a }):shares_storage(a))
  end)

  it("cat refuses mismatched shapes, bad dims and empty lists", function()
    assert.matches("cat: tensor 2 has shape [2,4], which does not match [2,3] outside dim 1",
      H.error_of(function() return miles.cat({ miles.zeros(2, 3), miles.zeros(2, 4) }) end), 1, true)
    assert.matches("cat: tensor 2 has shape [6], which does not match [2,3]",
      H.error_of(function() return miles.cat({ miles.zeros(2, 3), miles.zeros(6) }) end), 1, true)
    assert.matches("cat: dim 3 out of range for a tensor of 2 dims",
      H.error_of(function() return miles.cat({ miles.zeros(2, 3) }, 3) end), 1, true)
    assert.matches("an empty list of tensors", H.error_of(function() return miles.cat({}) end), 1, true)
    assert.matches("element 2 is not a tensor",
      H.error_of(function() return miles.cat({ miles.zeros(2), 3 }) end), 1, true)
  end)

  it("stack joins along a new dim", function()
    local a, b = miles.tensor({ 1, 2, 3 }), miles.tensor({ 4, 5, 6 })
    assert.same({ { 1, 2, 3 }, { 4, 5, 6 } }, miles.stack({ a, b }):totable())
    assert.same({ { 1, 4 }, { 2, 5 }, { 3, 6 } }, miles.stack({ a, b }, 2):totable())
    assert.same({ { 1, 4 }, { 2, 5 }, { 3, 6 } }, miles.stack({ a, b }, -1):totable())
    assert.same({ 3, 2, 2 }, miles.stack({ seq(2, 2), seq(2, 2), seq(2, 2) }):shape())
    assert.same({ 2 }, miles.stack({ miles.tensor(1), miles.tensor(2) }):shape())
    assert.matches("stack: tensor 2 has shape [2] but tensor 1 has [3]",
      H.error_of(function() return miles.stack({ a, miles.zeros(2) }) end), 1, true)
    assert.matches("stack: dim 3 out of range",
      H.error_of(function() return miles.stack({ a, b }, 3) end), 1, true)
  end)
end)

describe("split and chunk", function()
  local function tables(ps)
    local out = {}
    for i, p in ipairs(ps) do out[i] = p:totable() end
    return out
  end

  it("split cuts pieces of a size, the last one smaller", function()
    local x = seq(5)
    assert.same({ { 0, 1 }, { 2, 3 }, { 4 } }, tables(x:split(2)))
    assert.same({ { 0, 1, 2, 3, 4 } }, tables(x:split(5)))
    assert.same({ { 0, 1, 2, 3, 4 } }, tables(x:split(7)))
    assert.same({ { 0 }, { 1 }, { 2 }, { 3 }, { 4 } }, tables(miles.split(x, 1)))
  end)

  it("split along another dim returns views", function()
    local x = seq(2, 5)
    local ps = x:split(3, 2)
    assert.equal(2, #ps)
    assert.same({ { 0, 1, 2 }, { 5, 6, 7 } }, ps[1]:totable())
    assert.same({ { 3, 4 }, { 8, 9 } }, ps[2]:totable())
    assert.is_true(ps[2]:shares_storage(x))
    ps[2][1][1] = 99
    assert.equal(99, x[1][4]:item())
    assert.equal(1, #x:split(2, -2))
    assert.same({ 1, 5 }, x:split(1, 1)[2]:shape())
  end)

  it("chunk makes at most n pieces of equal size, the last smaller", function()
    local x = seq(5)
    assert.same({ { 0, 1 }, { 2, 3 }, { 4 } }, tables(x:chunk(3)))
    assert.same({ { 0, 1, 2 }, { 3, 4 } }, tables(x:chunk(2)))
    assert.same({ { 0, 1 }, { 2, 3 }, { 4 } }, tables(x:chunk(4))) -- as PyTorch: 3 pieces
    assert.same({ { 0 }, { 1 }, { 2 }, { 3 }, { 4 } }, tables(x:chunk(5)))
    assert.same({ { 0 }, { 1 }, { 2 }, { 3 }, { 4 } }, tables(x:chunk(8)))
    local y = seq(2, 4)
    assert.same({ { { 0, 1 }, { 4, 5 } }, { { 2, 3 }, { 6, 7 } } }, tables(y:chunk(2, 2)))
  end)

  it("split and chunk of an empty dim give one empty piece", function()
    local ps = miles.zeros(0, 3):split(2)
    assert.equal(1, #ps)
    assert.same({ 0, 3 }, ps[1]:shape())
    assert.equal(1, #miles.zeros(0):chunk(3))
  end)

  it("refuse non-positive sizes and bad dims", function()
    assert.matches("split: the piece size must be positive, got 0",
      H.error_of(function() return seq(4):split(0) end), 1, true)
    assert.matches("chunk: the number of chunks must be positive, got 0",
      H.error_of(function() return seq(4):chunk(0) end), 1, true)
    assert.matches("split: dim 2 out of range for a tensor of 1 dims",
      H.error_of(function() return seq(4):split(2, 2) end), 1, true)
  end)
end)

describe("index_select", function()
  it("selects along any dim with 1-based indices", function()
    local x = seq(3, 4)
    assert.same({ { 8, 9, 10, 11 }, { 0, 1, 2, 3 } }, x:index_select(1, idx({ 3, 1 })):totable())
    assert.same({ { 3, 0, 0 }, { 7, 4, 4 }, { 11, 8, 8 } }, x:index_select(2, idx({ 4, 1, 1 })):totable())
    assert.same({ { 3 }, { 7 }, { 11 } }, miles.index_select(x, -1, idx({ 4 })):totable())
    assert.same({ 3, 0 }, x:index_select(2, idx({})):shape())
    local f = seq(2, 2):to("float64")
    assert.equal("float64", f:index_select(1, idx({ 2 })):dtype())
    assert.same({ { true }, { false } }, miles.tensor({ { false, true }, { true, false } }):index_select(2, idx({ 2 })):totable())
  end)

  it("refuses bad indices and index shapes", function()
    local x = seq(3, 4)
    assert.matches("index_select: index 5 is out of range for a dim of size 4",
      H.error_of(function() return x:index_select(2, idx({ 5 })) end), 1, true)
    assert.matches("index_select: index -1 is out of range for a dim of size 3",
      H.error_of(function() return x:index_select(1, idx({ -1 })) end), 1, true)
    assert.matches("index_select: indices must be 1-D, got 2 dims",
      H.error_of(function() return x:index_select(1, idx({ { 1 } })) end), 1, true)
    assert.matches("index_select: dim 3 out of range",
      H.error_of(function() return x:index_select(3, idx({ 1 })) end), 1, true)
    assert.matches("indices must be an int64 tensor, got float32",
      H.error_of(function() return x:index_select(1, miles.tensor({ 1.0 })) end), 1, true)
  end)
end)

describe("gather", function()
  it("picks one element per position along a dim", function()
    local x = miles.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    assert.same({ { 3, 1 }, { 5, 5 } }, x:gather(2, idx({ { 3, 1 }, { 2, 2 } })):totable())
    assert.same({ { 4, 2, 6 } }, x:gather(1, idx({ { 2, 1, 2 } })):totable())
    assert.same({ { 1, 5, 3 }, { 4, 2, 6 } }, x:gather(1, idx({ { 1, 2, 1 }, { 2, 1, 2 } })):totable())
    local f = miles.tensor({ { 0.5, 1.5 } })
    assert.same({ { 1.5 } }, miles.gather(f, -1, idx({ { 2 } })):totable())
  end)

  it("refuses out-of-range indices and mismatched shapes", function()
    local x = seq(2, 3)
    assert.matches("gather: index 4 is out of range for a dim of size 3",
      H.error_of(function() return x:gather(2, idx({ { 1 }, { 4 } })) end), 1, true)
    assert.matches("gather: index of shape [3,1] must match input [2,3] outside dim 2",
      H.error_of(function() return x:gather(2, idx({ { 1 }, { 1 }, { 1 } })) end), 1, true)
    assert.matches("gather: index of shape [2] must match input [2,3]",
      H.error_of(function() return x:gather(2, idx({ 1, 1 })) end), 1, true)
  end)
end)

describe("masked_select and nonzero", function()
  it("masked_select flattens the selected elements", function()
    local x = seq(2, 3)
    assert.same({ 1, 2, 3, 4, 5 }, miles.masked_select(x, x:gt(0)):totable())
    local m = miles.tensor({ { false, true, false }, { true, false, true } })
    assert.same({ 1, 3, 5 }, x:masked_select(m):totable())
    -- the mask broadcasts against the input (and the input against the mask)
    assert.same({ 3, 4, 5 }, x:masked_select(miles.tensor({ { false }, { true } })):totable())
    assert.same({ 7, 7 }, miles.tensor(7):masked_select(miles.tensor({ true, false, true })):totable())
  end)

  it("masked_select refuses non-bool masks and shapes that do not broadcast", function()
    local x = seq(2, 3)
    assert.matches("masked_select: the mask must be a bool tensor, got int64",
      H.error_of(function() return x:masked_select(seq(2, 3)) end), 1, true)
    assert.matches("masked_select: shapes [2,3] and [2] cannot be broadcast",
      H.error_of(function() return x:masked_select(miles.tensor({ true, false })) end), 1, true)
  end)

  it("nonzero gives 1-based positions, one row per non-zero element", function()
    local x = miles.tensor({ { 0, 3, 0 }, { 4, 0, 5 } })
    local nz = miles.nonzero(x)
    assert.equal("int64", nz:dtype())
    assert.same({ { 1, 2 }, { 2, 1 }, { 2, 3 } }, nz:totable())
    assert.same({ { 2 }, { 4 } }, miles.tensor({ 0, 1.5, 0, -2 }):nonzero():totable())
    assert.same({ 0, 2 }, miles.zeros(2, 2):nonzero():shape())
    assert.same({ { 1 }, { 3 } }, miles.tensor({ true, false, true }):nonzero():totable())
    -- positions in a transposed view are positions in the view
    assert.same({ { 1, 2 }, { 2, 1 }, { 3, 2 } }, x:t():nonzero():totable())
  end)
end)

describe("gradients of joining and indexing", function()
  it("flow back correctly (checked against finite differences)", function()
    local cases = {
      cat = { function(a, b) return miles.cat({ a, b }, 2) end, { 2, 3 }, { 2, 2 } },
      cat_view = { function(a, b) return miles.cat({ a:t(), b }, 1) end, { 3, 2 }, { 1, 3 } },
      stack = { function(a, b) return miles.stack({ a, b }, -1) end, { 2, 3 }, { 2, 3 } },
      split = { function(a) local p = a:split(2, 2); return p[1] * 2 + p[2]:sum() end, { 3, 3 } },
      chunk = { function(a) return a:chunk(2, 1)[2] end, { 3, 3 } },
      index_select = { function(a) return a:index_select(2, idx({ 3, 1, 3 })) end, { 2, 3 } },
      index_select_t = { function(a) return a:t():index_select(1, idx({ 2, 2 })) end, { 2, 3 } },
      x_idx = { function(a) return a[idx({ 3, 1, 3 })] end, { 3, 2 } },
      gather = { function(a) return a:gather(2, idx({ { 1, 1 }, { 3, 2 } })) end, { 2, 3 } },
      gather_t = { function(a) return a:t():gather(1, idx({ { 2, 1 }, { 1, 1 } })) end, { 2, 3 } },
      masked = { function(a) return a:masked_select(miles.tensor({ { true, false, true }, { false, false, true } })) end, { 2, 3 } },
      masked_bcast = { function(a) return a:masked_select(miles.tensor({ { true }, { false }, { true } })) end, { 1, 2 } },
      x_mask = { function(a) return a[a:gt(0)] end, { 2, 3 } },
    }
    for name, c in pairs(cases) do
      local inputs = {}
      for i = 2, #c do inputs[#inputs + 1] = H.leaf(c[i]) end
      local ok, err = pcall(H.gradcheck, c[1], inputs)
      assert(ok, name .. ": " .. tostring(err))
    end
  end)

  it("accumulate over repeated indices (hand-computed)", function()
    local x = miles.zeros(3, { dtype = "float64", requires_grad = true })
    x:index_select(1, idx({ 1, 3, 1, 1 })):sum():backward()
    assert.same({ 3, 0, 1 }, x.grad:totable())
    local y = miles.zeros(2, 2, { dtype = "float64", requires_grad = true })
    y:gather(2, idx({ { 2, 2, 2 }, { 1, 2, 1 } })):sum():backward()
    assert.same({ { 0, 3 }, { 2, 1 } }, y.grad:totable())
    local a = miles.ones(2, { dtype = "float64", requires_grad = true })
    local b = miles.ones(3, { dtype = "float64", requires_grad = true })
    local joined = miles.cat({ a, b }) * miles.arange(1, 6, { dtype = "float64" })
    joined:sum():backward()
    assert.same({ 1, 2 }, a.grad:totable())
    assert.same({ 3, 4, 5 }, b.grad:totable())
  end)
end)
