-- Views (reshape, view, flatten, permute, transpose, narrow, select, squeeze,
-- unsqueeze, expand): their values, that they share storage, that every op family
-- gives the same answers on non-contiguous inputs, empty tensors, size-1 dims and
-- broadcasting.
local miles = require "miles"
local H = require "helpers"

-- 0 .. n-1 in the given shape, float64 (small integers: every op below is exact).
local function seq(...)
  local shape = { ... }
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return miles.arange(n, { dtype = "float64" }):reshape(shape)
end

describe("reshape and view", function()
  it("keep the row-major order of the elements", function()
    local x = seq(2, 3)
    assert.same({ { 0, 1 }, { 2, 3 }, { 4, 5 } }, x:reshape(3, 2):totable())
    assert.same({ 0, 1, 2, 3, 4, 5 }, x:view(6):totable())
    assert.same({ { { 0 }, { 1 }, { 2 } }, { { 3 }, { 4 }, { 5 } } }, x:reshape({ 2, 3, 1 }):totable())
  end)

  it("infer one -1 size, given as arguments or in a table", function()
    local x = seq(2, 3, 4)
    assert.same({ 6, 4 }, x:reshape(-1, 4):shape())
    assert.same({ 2, 12 }, x:reshape({ 2, -1 }):shape())
    assert.same({ 24 }, x:view(-1):shape())
    assert.same({ 4, 3, 2 }, x:view({ 4, -1, 2 }):shape())
    assert.same({ 0, 3 }, miles.zeros(0, 6):reshape(-1, 3):shape())
  end)

  it("reshape to and from 0-dim", function()
    local s = miles.tensor({ 5 }):reshape()
    assert.same({}, s:shape())
    assert.equal(5, s:item())
    assert.same({ 1, 1 }, miles.tensor(5):reshape(1, 1):shape())
    assert.same({ 1 }, miles.tensor(5):view(-1):shape())
  end)

  it("share storage with a contiguous input (writes go through)", function()
    local x = seq(2, 3)
    local v = x:view(3, 2)
    assert.is_true(v:shares_storage(x))
    v[3] = miles.tensor({ 40, 50 }, { dtype = "float64" })
    assert.same({ { 0, 1, 2 }, { 3, 40, 50 } }, x:totable())
    local r = x:reshape(6)
    r[1] = -1
    assert.equal(-1, x[1][1]:item())
  end)

  it("view a narrowed (non-contiguous) tensor when the strides allow", function()
    local x = seq(4, 6):narrow(2, 1, 3) -- [4,3] with row stride 6
    assert.is_false(x:is_contiguous())
    local v = x:view(2, 2, 3)
    assert.is_true(v:shares_storage(x))
    assert.same({ 12, 6, 1 }, v:stride())
    assert.same({ { { 0, 1, 2 }, { 6, 7, 8 } }, { { 12, 13, 14 }, { 18, 19, 20 } } }, v:totable())
    -- splitting the last dim of a transposed matrix is a view too
    local t = seq(3, 4):t() -- [4,3], strides [1,4]
    local u = t:view(2, 2, 3)
    assert.same({ 2, 1, 4 }, u:stride())
    assert.same(t:contiguous():view(2, 2, 3):totable(), u:totable())
  end)

  it("reshape copies when no view is possible, view refuses", function()
    local p = seq(2, 3, 4):permute(3, 1, 2) -- [4,2,3]
    local r = p:reshape(-1)
    assert.is_false(r:shares_storage(p))
    assert.same({ 0, 4, 8, 12, 16, 20, 1, 5, 9 }, { table.unpack(r:totable(), 1, 9) })
    local msg = H.error_of(function() return p:view(-1) end)
    assert.matches("view: a tensor of shape [4,2,3] with these strides cannot be viewed as [24]",
      msg, 1, true)
    assert.matches("use reshape", msg, 1, true)
  end)

  it("reject sizes that do not match the element count", function()
    local x = seq(2, 3)
    assert.matches("reshape: cannot reshape [2,3] (6 elements) into [4] (4 elements)",
      H.error_of(function() return x:reshape(4) end), 1, true)
    assert.matches("view: cannot reshape [2,3] into [4,-1]",
      H.error_of(function() return x:view(4, -1) end), 1, true)
    assert.matches("only one dim can be -1", H.error_of(function() return x:reshape(-1, -1) end), 1, true)
    assert.matches("invalid size -2", H.error_of(function() return x:reshape(-2, 3) end), 1, true)
  end)
end)

describe("flatten", function()
  it("flattens all dims, or a range of them", function()
    local x = seq(2, 3, 4)
    assert.same({ 24 }, x:flatten():shape())
    assert.same({ 2, 12 }, x:flatten(2):shape())
    assert.same({ 6, 4 }, x:flatten(1, 2):shape())
    assert.same({ 6, 4 }, x:flatten(1, -2):shape())
    assert.same({ 2, 3, 4 }, x:flatten(2, 2):shape())
    assert.same(x:reshape(2, 12):totable(), x:flatten(2):totable())
    assert.same({ 1 }, miles.tensor(3):flatten():shape())
    assert.is_true(x:flatten():shares_storage(x))
  end)

  it("copies a permuted tensor in its logical order", function()
    local x = seq(2, 3):t()
    assert.same({ 0, 3, 1, 4, 2, 5 }, x:flatten():totable())
  end)

  it("rejects a start after the end", function()
    assert.matches("flatten: start dim 3 comes after end dim 1",
      H.error_of(function() return seq(2, 3, 4):flatten(3, 1) end), 1, true)
  end)
end)

describe("permute, transpose and t", function()
  it("permute reorders shape and strides without copying", function()
    local x = seq(2, 3, 4)
    local p = x:permute(3, 1, 2)
    assert.same({ 4, 2, 3 }, p:shape())
    assert.same({ 1, 12, 4 }, p:stride())
    assert.is_true(p:shares_storage(x))
    assert.is_false(p:is_contiguous())
    -- p[k][i][j] == x[i][j][k]
    assert.equal(x[2][3][4]:item(), p[4][2][3]:item())
    assert.equal(x[1][2][3]:item(), p[3][1][2]:item())
    assert.same({ 4, 2, 3 }, x:permute({ 3, 1, 2 }):shape())
    assert.same({ 4, 2, 3 }, x:permute(-1, 1, 2):shape())
    assert.same(x:totable(), p:permute(2, 3, 1):totable())
  end)

  it("permute rejects repeated or missing dims", function()
    local x = seq(2, 3, 4)
    assert.matches("permute: the dims given are not a permutation of the 3 dims",
      H.error_of(function() return x:permute(1, 1, 2) end), 1, true)
    assert.matches("permute: expects 3 dims, got 2",
      H.error_of(function() return x:permute(1, 2) end), 1, true)
    assert.matches("dim 4 out of range", H.error_of(function() return x:permute(1, 2, 4) end), 1, true)
  end)

  it("transpose swaps two dims (negative dims count from the end)", function()
    local x = seq(2, 3, 4)
    local t = x:transpose(1, 3)
    assert.same({ 4, 3, 2 }, t:shape())
    assert.equal(x[2][1][3]:item(), t[3][1][2]:item())
    assert.same(t:totable(), x:transpose(-1, 1):totable())
    assert.same(x:totable(), x:transpose(2, 2):totable())
    assert.same({ 2, 4, 3 }, miles.transpose(x, -1, -2):shape())
  end)

  it("t transposes matrices and leaves vectors alone", function()
    local m = seq(2, 3)
    assert.same({ { 0, 3 }, { 1, 4 }, { 2, 5 } }, m:t():totable())
    assert.same({ 1, 3 }, m:t():stride())
    local v = seq(3)
    assert.same({ 0, 1, 2 }, v:t():totable())
    assert.matches("t: expects a tensor of at most 2 dims, got 3",
      H.error_of(function() return seq(2, 2, 2):t() end), 1, true)
  end)
end)

describe("narrow and select", function()
  it("narrow keeps a range of one dim (start is 1-based)", function()
    local x = seq(3, 4)
    local n = x:narrow(2, 2, 2)
    assert.same({ { 1, 2 }, { 5, 6 }, { 9, 10 } }, n:totable())
    assert.same({ 4, 1 }, n:stride())
    assert.same({ { 4, 5, 6, 7 }, { 8, 9, 10, 11 } }, x:narrow(1, 2, 2):totable())
    assert.same({ 3, 0 }, x:narrow(2, 5, 0):shape())
    assert.same({ { 3 }, { 7 }, { 11 } }, x:narrow(-1, 4, 1):totable())
    assert.same({ { 4, 5, 6, 7 } }, miles.narrow(x, 1, 2, 1):totable())
  end)

  it("narrow counts a negative start from the end", function()
    local x = seq(6)
    assert.same({ 4, 5 }, x:narrow(1, -2, 2):totable())
    assert.same({ 5 }, x:narrow(1, -1, 1):totable())
    assert.same({ 0, 1, 2, 3, 4, 5 }, x:narrow(1, -6, 6):totable())
    assert.matches("narrow: start -7 is out of range for dim 1 of size 6",
      H.error_of(function() return x:narrow(1, -7, 1) end), 1, true)
  end)

  it("narrow rejects ranges outside the dim", function()
    local x = seq(3, 4)
    assert.matches("narrow: elements 3 to 5 are out of range for dim 2 of size 4",
      H.error_of(function() return x:narrow(2, 3, 3) end), 1, true)
    assert.matches("start is 1-based", H.error_of(function() return x:narrow(2, 0, 1) end), 1, true)
  end)

  it("select removes the dim (negative indices from the end)", function()
    local x = seq(2, 3, 4)
    assert.same({ 2, 4 }, x:select(2, 3):shape())
    assert.same({ { 8, 9, 10, 11 }, { 20, 21, 22, 23 } }, x:select(2, 3):totable())
    assert.same(x:select(2, 3):totable(), x:select(2, -1):totable())
    assert.same({ { 3, 7, 11 }, { 15, 19, 23 } }, x:select(-1, 4):totable())
    assert.equal(23, x:select(1, 2):select(1, 3):select(1, 4):item())
    assert.matches("select: index 4 is out of range for dim 2 of size 3",
      H.error_of(function() return x:select(2, 4) end), 1, true)
    assert.matches("select: index -4 is out of range for dim 2 of size 3",
      H.error_of(function() return x:select(2, -4) end), 1, true)
  end)
end)

describe("squeeze and unsqueeze", function()
  it("squeeze drops size-1 dims (all, or one)", function()
    local x = miles.zeros(1, 3, 1, 2)
    assert.same({ 3, 2 }, x:squeeze():shape())
    assert.same({ 3, 1, 2 }, x:squeeze(1):shape())
    assert.same({ 1, 3, 2 }, x:squeeze(-2):shape())
    assert.same({ 1, 3, 1, 2 }, x:squeeze(2):shape()) -- size 3: unchanged
    assert.same({}, miles.zeros(1, 1):squeeze():shape())
    assert.same({ 3, 2 }, miles.squeeze(x):shape())
  end)

  it("unsqueeze inserts a size-1 dim at any position", function()
    local x = seq(2, 3)
    assert.same({ 1, 2, 3 }, x:unsqueeze(1):shape())
    assert.same({ 2, 1, 3 }, x:unsqueeze(2):shape())
    assert.same({ 2, 3, 1 }, x:unsqueeze(3):shape())
    assert.same({ 2, 3, 1 }, x:unsqueeze(-1):shape())
    assert.same({ { { 0, 1, 2 } }, { { 3, 4, 5 } } }, x:unsqueeze(2):totable())
    assert.same({ 1 }, miles.tensor(4):unsqueeze(1):shape())
    assert.matches("unsqueeze: dim 4 out of range", H.error_of(function() return x:unsqueeze(4) end), 1, true)
  end)

  it("unsqueeze of a transposed view stays a view with the right values", function()
    local t = seq(2, 3):t()
    local u = t:unsqueeze(2)
    assert.is_true(u:shares_storage(t))
    assert.same({ { { 0, 3 } }, { { 1, 4 } }, { { 2, 5 } } }, u:totable())
  end)
end)

describe("expand", function()
  it("repeats size-1 dims with stride 0, and adds leading dims", function()
    local x = miles.tensor({ { 1 }, { 2 } })
    local e = x:expand(2, 3)
    assert.same({ { 1, 1, 1 }, { 2, 2, 2 } }, e:totable())
    assert.same({ 1, 0 }, e:stride())
    assert.is_true(e:shares_storage(x))
    assert.same({ 2, 2, 3 }, x:expand(2, 2, 3):shape())
    assert.same({ 0, 1, 0 }, x:expand({ 2, 2, 3 }):stride())
    assert.same({ 2, 4 }, x:expand(-1, 4):shape())
    assert.same({ 2, 3 }, miles.tensor(5):expand(2, 3):shape())
    assert.equal(30, miles.tensor(5):expand(2, 3):sum():item())
  end)

  it("expand_as takes another tensor's shape", function()
    local x = miles.tensor({ 1, 2, 3 })
    assert.same({ { 1, 2, 3 }, { 1, 2, 3 } }, x:expand_as(miles.zeros(2, 3)):totable())
  end)

  it("refuses -1 for a new leading dim", function()
    assert.matches("expand: -1 (keep the size) in dim 1, which is a new dim",
      H.error_of(function() return miles.zeros(3):expand(-1, 3) end), 1, true)
    assert.matches("expand: invalid size in dim 2",
      H.error_of(function() return miles.zeros(3):expand(2, -3) end), 1, true)
  end)

  it("rejects a dim that is not of size 1", function()
    assert.matches("expand: cannot expand [2,1] to [3,3] (dim 1: 2 ~= 3)",
      H.error_of(function() return miles.zeros(2, 1):expand(3, 3) end), 1, true)
    assert.matches("expand: cannot expand [2,3] to [3]",
      H.error_of(function() return miles.zeros(2, 3):expand(3) end), 1, true)
  end)

  it("an expanded view sees writes to its base", function()
    local x = miles.tensor({ 1, 2 })
    local e = x:expand(3, 2)
    x[2] = 9
    assert.same({ { 1, 9 }, { 1, 9 }, { 1, 9 } }, e:totable())
  end)
end)

describe("views share storage", function()
  it("writes through narrow, select, t, unsqueeze and chains of views", function()
    local x = seq(3, 4)
    x:narrow(2, 2, 2):fill_(-1)
    assert.same({ { 0, -1, -1, 3 }, { 4, -1, -1, 7 }, { 8, -1, -1, 11 } }, x:totable())
    x:select(1, 2):zero_()
    assert.same({ 0, 0, 0, 0 }, x[2]:totable())
    x:t()[4]:copy_(miles.tensor({ 100, 200, 300 }))
    assert.same({ 100, 200, 300 }, x:select(2, 4):totable())
    x:unsqueeze(1)[1][3][1] = 42
    assert.equal(42, x[3][1]:item())
    x:t():narrow(1, 1, 1):view(3)[1] = 7
    assert.equal(7, x[1][1]:item())
  end)

  it("x[i] is a view and x[i] = v writes the row", function()
    local x = seq(2, 3)
    local row = x[2]
    assert.is_true(row:shares_storage(x))
    row[1] = 30
    assert.equal(30, x[2][1]:item())
    x[1] = miles.tensor({ 7, 8, 9 })
    assert.same({ { 7, 8, 9 }, { 30, 4, 5 } }, x:totable())
    x[-1] = 1
    assert.same({ 1, 1, 1 }, x[2]:totable())
  end)

  it("in-place arithmetic writes through a view", function()
    local x = seq(2, 2)
    x:t():add_(10)
    assert.same({ { 10, 11 }, { 12, 13 } }, x:totable())
    x[1]:mul_(miles.tensor({ 2, 3 }, { dtype = "float64" }))
    assert.same({ { 20, 33 }, { 12, 13 } }, x:totable())
  end)

  it("in-place arithmetic gives the out-of-place values, operands overlapping it or not", function()
    local function check(t, op, b)
      local want = t[op](t, b):totable()
      t[op .. "_"](t, b)
      assert.same(want, t:totable(), op)
    end
    local s = seq(3, 3)
    check(s, "add", s:t()) -- overlapping in another layout
    check(s, "mul", s) -- itself, in the same layout
    local v = seq(5)
    check(v:narrow(1, 2, 4), "sub", v:narrow(1, 1, 4)) -- shifted by one
    local e = seq(2, 2)
    check(e, "div", e[2] + 1) -- a row, broadcast
    check(e, "add", e[1]) -- a row of itself, broadcast over it
    local cl = seq(2, 3, 2, 2):permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3)
    check(cl, "mul", seq(1, 3, 1, 1)) -- channels-last, a per-channel operand
    local i = miles.tensor({ 1, 2, 3 }, { dtype = "int64" })
    check(i, "add", 4)
    check(i, "mul", miles.tensor({ 2 }, { dtype = "int64" }))
    assert.matches("add_: the result is float32", H.error_of(function() i:add_(0.5) end), 1, true)
    assert.same({ 10, 12, 14 }, i:totable())
    local h = miles.tensor({ 1, 3, 250 }, { dtype = "bfloat16" })
    check(h, "add", 0.1) -- a scalar bfloat16 cannot hold: in float32, rounded once
    check(h, "mul", 2)
    local f = miles.arange(4, { dtype = "float32" })
    check(f, "add", miles.tensor({ 1, 2, 3, 4 }, { dtype = "float64" })) -- promotes: copied in
  end)

  it("copies into a view from an overlapping view of the same storage", function()
    local s = seq(3, 3)
    s:copy_(s:t())
    assert.same({ { 0, 3, 6 }, { 1, 4, 7 }, { 2, 5, 8 } }, s:totable())
    local v = seq(5)
    v:narrow(1, 2, 4):copy_(v:narrow(1, 1, 4))
    assert.same({ 0, 0, 1, 2, 3 }, v:totable())
    local w = seq(5)
    w:narrow(1, 1, 4):copy_(w:narrow(1, 2, 4))
    assert.same({ 1, 2, 3, 4, 4 }, w:totable())
    local r = seq(3, 2)
    r[1]:copy_(r[3]) -- same storage, disjoint rows
    r[3] = r[2]
    assert.same({ { 4, 5 }, { 2, 3 }, { 2, 3 } }, r:totable())
    local e = seq(2, 2)
    e:copy_(e[1]) -- broadcast a row of itself over the whole tensor
    assert.same({ { 0, 1 }, { 0, 1 } }, e:totable())
  end)

  it("clone, contiguous copies and to(dtype) do not share", function()
    local x = seq(2, 3)
    assert.is_false(x:clone():shares_storage(x))
    assert.is_true(x:contiguous():shares_storage(x))
    assert.is_false(x:t():contiguous():shares_storage(x))
    assert.is_true(x:t():contiguous():is_contiguous())
    assert.is_false(x:to("float32"):shares_storage(x))
    assert.is_true(x:detach():shares_storage(x))
    local c = x:clone()
    c[1][1] = 99
    assert.equal(0, x[1][1]:item())
  end)
end)

describe("non-contiguous inputs give the same values as contiguous copies", function()
  -- A few layouts of the same logical values: transposed, narrowed, expanded,
  -- permuted, stepped (a view with stride 2).
  local function layouts()
    local base = seq(4, 6)
    local stepped = seq(4, 12):view(4, 6, 2):select(3, 1) -- stride [12, 2]
    return {
      t = seq(6, 4):t(),                         -- [4,6], strides [1,4]
      narrow = seq(5, 8):narrow(1, 2, 4):narrow(2, 3, 6),
      expand = seq(1, 6):expand(4, 6),
      permute = seq(6, 1, 4):permute(3, 1, 2):squeeze(3),
      stepped = stepped,
      contiguous = base,
    }
  end

  local function same(a, b, what)
    assert.same(b:shape(), a:shape(), what)
    assert.same(b:totable(), a:totable(), what)
  end

  it("has genuinely non-contiguous layouts to test", function()
    for name, x in pairs(layouts()) do
      assert.same({ 4, 6 }, x:shape(), name)
      assert.equal(name == "contiguous", x:is_contiguous(), name)
    end
    local l = layouts()
    assert.same({ 0, 2, 4, 6, 8, 10 }, l.stepped[1]:totable())
    assert.same({ 12, 14, 16, 18, 20, 22 }, l.stepped[2]:totable())
    assert.same({ 18, 19, 20, 21, 22, 23 }, l.narrow[2]:totable())
  end)

  it("for unary elementwise ops", function()
    for name, x in pairs(layouts()) do
      local c = x:contiguous()
      local y = x * 0.25 - 2
      same(y, c * 0.25 - 2, name)
      for _, f in ipairs({ "neg", "abs", "exp", "relu", "sigmoid", "tanh", "square", "sign" }) do
        same(miles[f](y), miles[f](c * 0.25 - 2), name .. " " .. f)
      end
      same(y:clamp(-1, 1), (c * 0.25 - 2):clamp(-1, 1), name .. " clamp")
      same(x:pow(2), c:pow(2), name .. " pow")
      same(x:sqrt(), c:sqrt(), name .. " sqrt")
      same(x:log(), c:log(), name .. " log")
      same(x:to("float32"), c:to("float32"), name .. " to")
      same(x:clone(), c, name .. " clone")
    end
    -- and the values themselves, for one layout
    assert.same({ { 0, 2, 4 }, { 1, 3, 5 } }, miles.abs(-seq(3, 2):t()):narrow(2, 1, 3):totable())
  end)

  it("for binary elementwise ops, in every pairing of layouts", function()
    local ls = layouts()
    for na, a in pairs(ls) do
      for nb, b in pairs(ls) do
        local ca, cb = a:contiguous(), b:contiguous()
        local what = na .. " with " .. nb
        same(a + b, ca + cb, what .. " add")
        same(a * b - a, ca * cb - ca, what .. " mul/sub")
        same(a / (b + 1), ca / (cb + 1), what .. " div")
        same(miles.maximum(a, b), miles.maximum(ca, cb), what .. " maximum")
        same(a:lt(b), ca:lt(cb), what .. " lt")
        same(miles.where(a:gt(b), a, b), miles.where(ca:gt(cb), ca, cb), what .. " where")
      end
    end
    local l = layouts()
    -- expand [1,6] row 0..5 plus the transposed [4,6] (value 4*j + i at [i][j])
    assert.same({ 0, 5, 10, 15, 20, 25 }, (l.expand + l.t)[1]:totable())
  end)

  it("for reductions", function()
    for name, x in pairs(layouts()) do
      local c = x:contiguous()
      same(x:sum(), c:sum(), name .. " sum")
      same(x:sum(1), c:sum(1), name .. " sum(1)")
      same(x:sum(2, true), c:sum(2, true), name .. " sum(2, keepdim)")
      same(x:mean(1), c:mean(1), name .. " mean")
      same(x:prod(2), c:prod(2), name .. " prod")
      same(x:amax(1), c:amax(1), name .. " amax")
      same(x:argmax(2), c:argmax(2), name .. " argmax")
      same(x:argmin(), c:argmin(), name .. " argmin")
      local v1, i1 = x:max(1)
      local v2, i2 = c:max(1)
      same(v1, v2, name .. " max values")
      same(i1, i2, name .. " max indices")
      H.assert_close(x:var(2), c:var(2), 1e-12, 1e-12, name .. " var")
      H.assert_close(x:logsumexp(1), c:logsumexp(1), 1e-12, 1e-12, name .. " logsumexp")
      H.assert_close(x:softmax(2), c:softmax(2), 1e-12, 1e-12, name .. " softmax")
    end
    local t = layouts().t -- value 4*j + i at [i][j], i in 0..3, j in 0..5
    assert.same({ 60, 66, 72, 78 }, t:sum(2):totable())
    assert.same({ 6, 22, 38, 54, 70, 86 }, t:sum(1):totable())
    assert.same({ 6, 6, 6, 6 }, t:argmax(2):totable())
    assert.equal(276, t:sum():item())
  end)

  it("for matrix products", function()
    local ls = layouts()
    for na, a in pairs(ls) do
      for nb, b in pairs(ls) do
        local what = na .. " @ " .. nb .. "^T"
        same(miles.matmul(a, b:t()), miles.matmul(a:contiguous(), b:t():contiguous()), what)
      end
      same(miles.matmul(a:t(), a), miles.matmul(a:t():contiguous(), a:contiguous()), na .. "^T @ " .. na)
      same(miles.matmul(a, seq(6)), miles.matmul(a:contiguous(), seq(6)), na .. " @ vector")
      same(miles.matmul(seq(4), a), miles.matmul(seq(4), a:contiguous()), "vector @ " .. na)
    end
    -- hand-computed: [[0,2],[1,3]] @ [[0,1],[2,3]] (a transposed left operand)
    local a = seq(2, 2):t()
    assert.same({ { 4, 6 }, { 6, 10 } }, miles.matmul(a, seq(2, 2)):totable())
  end)

  it("for batched matrix products with permuted and broadcast batches", function()
    local a = seq(3, 2, 4):permute(2, 1, 3) -- [2,3,4] non-contiguous batch
    local b = seq(2, 4, 5)
    same(miles.matmul(a, b), miles.matmul(a:contiguous(), b), "permuted batch")
    same(miles.bmm(a, b), miles.matmul(a:contiguous(), b), "bmm")
    local w = seq(4, 5):expand(2, 4, 5) -- batch stride 0
    same(miles.matmul(a, w), miles.matmul(a:contiguous(), w:contiguous()), "expanded batch")
    local bt = seq(2, 5, 4):transpose(2, 3)
    same(miles.matmul(a, bt), miles.matmul(a:contiguous(), bt:contiguous()), "transposed batch")
    -- [2,3,4] @ [4] and broadcasting [3,4] against a batch of 2
    same(miles.matmul(a, seq(4)), miles.matmul(a:contiguous(), seq(4)), "batch @ vector")
    same(miles.matmul(seq(3, 4):t():t(), seq(2, 4, 5)),
      miles.matmul(seq(1, 3, 4):expand(2, 3, 4):contiguous(), seq(2, 4, 5)), "broadcast batch")
  end)

  it("for joining and indexing ops", function()
    local ls = layouts()
    local idx = miles.tensor({ 3, 1, 3 })
    for name, x in pairs(ls) do
      local c = x:contiguous()
      same(miles.cat({ x, x }, 2), miles.cat({ c, c }, 2), name .. " cat")
      same(miles.stack({ x, c }, 1), miles.stack({ c, c }, 1), name .. " stack")
      same(x:index_select(2, idx), c:index_select(2, idx), name .. " index_select")
      same(x:gather(2, miles.ones(4, 2, { dtype = "int64" })), c:gather(2, miles.ones(4, 2, { dtype = "int64" })), name .. " gather")
      same(x[x:gt(10)], c[c:gt(10)], name .. " mask")
      same(miles.nonzero(x:gt(10)), miles.nonzero(c:gt(10)), name .. " nonzero")
      same(x[idx], c[idx], name .. " x[idx]")
    end
  end)
end)

describe("gradients of views", function()
  it("flow back through every view op (checked against finite differences)", function()
    local cases = {
      reshape = { function(x) return x:reshape(3, 2) end, { 2, 3 } },
      reshape_copy = { function(x) return x:t():reshape(-1) end, { 2, 3 } },
      view = { function(x) return x:view(-1, 2) end, { 2, 2 } },
      flatten = { function(x) return x:flatten(2) end, { 2, 3, 2 } },
      permute = { function(x) return x:permute(3, 1, 2) end, { 2, 3, 4 } },
      transpose = { function(x) return x:transpose(-1, 1) end, { 2, 3, 4 } },
      t = { function(x) return x:t() end, { 2, 3 } },
      narrow = { function(x) return x:narrow(2, 2, 2) end, { 2, 4 } },
      narrow_last = { function(x) return x:narrow(-1, -1, 1) end, { 3, 4 } },
      select_first = { function(x) return x:select(1, 2) end, { 3, 4 } },
      select_last = { function(x) return x:select(2, -1) end, { 3, 4 } },
      select_middle = { function(x) return x:select(2, 2) end, { 2, 3, 2 } },
      index = { function(x) return x[2][3] end, { 3, 4 } },
      squeeze = { function(x) return x:squeeze() end, { 2, 1, 3 } },
      squeeze_dim = { function(x) return x:squeeze(2) end, { 2, 1, 3 } },
      unsqueeze = { function(x) return x:unsqueeze(-1) end, { 2, 3 } },
      expand = { function(x) return x:expand(4, 2, 3) end, { 2, 1 } },
      expand_as = { function(x) return x:expand_as(miles.zeros(3, 4)) end, { 1, 4 } },
      contiguous = { function(x) return x:t():contiguous() end, { 2, 3 } },
      chain = { function(x) return x:t():narrow(1, 2, 2):unsqueeze(1):expand(2, 2, 2) end, { 2, 3 } },
    }
    for name, c in pairs(cases) do
      local ok, err = pcall(H.gradcheck, c[1], { H.leaf(c[2]) })
      assert(ok, name .. ": " .. tostring(err))
    end
  end)

  it("give hand-computed gradients for select, narrow and expand", function()
    local x = miles.zeros(2, 3, { dtype = "float64", requires_grad = true })
    local y = x:select(2, 3) * miles.tensor({ 10, 20 }, { dtype = "float64" })
    y:sum():backward()
    assert.same({ { 0, 0, 10 }, { 0, 0, 20 } }, x.grad:totable())
    x.grad = nil
    x:narrow(2, 1, 2):sum():backward()
    assert.same({ { 1, 1, 0 }, { 1, 1, 0 } }, x.grad:totable())
    local b = miles.ones(3, 1, { dtype = "float64", requires_grad = true })
    b:expand(3, 4):sum():backward()
    assert.same({ { 4 }, { 4 }, { 4 } }, b.grad:totable())
  end)
end)

describe("empty tensors and size-1 dims", function()
  it("work with elementwise ops, reshape and transposes", function()
    local e = miles.zeros(0, 3)
    assert.same({ 0, 3 }, (e + 1):shape())
    assert.same({ 0, 3 }, (e + miles.ones(3)):shape())
    assert.same({ 3, 0 }, e:t():shape())
    assert.same({ 0 }, e:reshape(-1):shape())
    assert.same({ 3, 0 }, e:t():contiguous():shape())
    assert.same({}, e:totable())
    assert.same({ 0, 3 }, miles.exp(e):shape())
    assert.is_true(e:is_contiguous())
  end)

  it("reduce to the identity of the reduction", function()
    local e = miles.zeros(0, 3)
    assert.equal(0, e:sum():item())
    assert.same({ 0, 0, 0 }, e:sum(1):totable())
    assert.same({ 0 }, e:sum(2):shape())
    assert.same({ 1, 1, 1 }, e:prod(1):totable())
    assert.matches("max: cannot reduce over an empty dim", H.error_of(function() return e:max(1) end), 1, true)
  end)

  it("multiply to zeros when the inner size is 0", function()
    local r = miles.matmul(miles.zeros(2, 0), miles.zeros(0, 3))
    assert.same({ { 0, 0, 0 }, { 0, 0, 0 } }, r:totable())
    assert.same({ 0, 3 }, miles.matmul(miles.zeros(0, 4), miles.ones(4, 3)):shape())
  end)

  it("join with empty pieces", function()
    local c = miles.cat({ miles.zeros(0, 2), miles.ones(2, 2), miles.zeros(0, 2) }, 1)
    assert.same({ { 1, 1 }, { 1, 1 } }, c:totable())
  end)

  it("broadcast size-1 dims against any size, including 0", function()
    local a = miles.tensor({ { 1 }, { 2 }, { 3 } })  -- [3,1]
    local b = miles.tensor({ { 10, 20, 30, 40 } })   -- [1,4]
    local s = a + b
    assert.same({ 3, 4 }, s:shape())
    assert.same({ { 11, 21, 31, 41 }, { 12, 22, 32, 42 }, { 13, 23, 33, 43 } }, s:totable())
    assert.same({ 2, 3, 4 }, (miles.zeros(2, 1, 4) + miles.zeros(3, 1)):shape())
    assert.same({ 0, 3 }, (miles.zeros(0, 3) + miles.zeros(1, 3)):shape())
    assert.same({ 2, 0 }, (miles.zeros(2, 1) + miles.zeros(2, 0)):shape())
    assert.same({ 2, 3 }, (miles.tensor(2) * miles.ones(2, 3)):shape())
    assert.same({ 1, 1 }, (miles.zeros(1, 1) + miles.zeros(1)):shape())
    assert.same({ { 2, 3 } }, (miles.tensor({ 1 }) + miles.tensor({ { 1, 2 } })):totable())
  end)

  it("refuse sizes that are neither equal nor 1", function()
    assert.matches("add: shapes [0] and [2] cannot be broadcast (dim 1: 0 ~= 2)",
      H.error_of(function() return miles.zeros(0) + miles.zeros(2) end), 1, true)
    assert.matches("mul: shapes [2,3] and [3,2] cannot be broadcast (dim 1: 2 ~= 3)",
      H.error_of(function() return miles.zeros(2, 3) * miles.zeros(3, 2) end), 1, true)
    assert.matches("where: shapes",
      H.error_of(function() return miles.where(miles.zeros(3):gt(0), miles.zeros(2), 1) end), 1, true)
  end)

  it("broadcast the second operand of a copy, never the destination", function()
    local x = miles.zeros(2, 3)
    x:copy_(miles.tensor({ 1, 2, 3 }))
    assert.same({ { 1, 2, 3 }, { 1, 2, 3 } }, x:totable())
    assert.matches("copy: cannot expand [2,3] to [3]",
      H.error_of(function() return miles.zeros(3):copy_(miles.zeros(2, 3)) end), 1, true)
  end)
end)
