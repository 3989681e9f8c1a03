-- Random numbers: reproducible from a seed (whatever the thread count), with the
-- right ranges and moments, and a generator state that can be saved and restored.
local miles = require "miles"
local H = require "helpers"

-- Are two tensors equal element for element (same shape, same values)?
local function identical(a, b)
  return table.concat(a:shape(), "x") == table.concat(b:shape(), "x")
    and a:ne(b):to("int64"):sum():item() == 0
end

describe("manual_seed", function()
  it("makes every generator reproducible", function()
    for _, make in ipairs({
      function() return miles.rand(50) end,
      function() return miles.randn(50, { dtype = "float64" }) end,
      function() return miles.randint(-5, 5, { 50 }) end,
      function() return miles.randperm(50) end,
    }) do
      miles.manual_seed(42)
      local a1, a2 = make(), make()
      miles.manual_seed(42)
      local b1, b2 = make(), make()
      assert.is_true(identical(a1, b1))
      assert.is_true(identical(a2, b2))
      assert.is_false(identical(a1, a2)) -- the stream moves on between draws
      miles.manual_seed(43)
      assert.is_false(identical(a1, make()))
    end
  end)

  it("initial_seed returns the seed", function()
    miles.manual_seed(1234)
    assert.equal(1234, miles.initial_seed())
  end)

  it("consecutive draws continue one stream (two draws of 3 = one draw of 6)", function()
    miles.manual_seed(7)
    local a = miles.rand(6, { dtype = "float64" })
    miles.manual_seed(7)
    local b = miles.rand(3, { dtype = "float64" })
    local c = miles.rand(3, { dtype = "float64" })
    assert.is_true(identical(a, miles.cat({ b, c })))
  end)

  it("gives the same normals in float32 as float64 rounded", function()
    miles.manual_seed(5)
    local d = miles.randn(1000, { dtype = "float64" })
    miles.manual_seed(5)
    local f = miles.randn(1000)
    assert.is_true(identical(d:to("float32"), f))
  end)

  it("gives the same numbers with 1 or 2 threads", function()
    local before = miles.get_num_threads()
    local function draw()
      miles.manual_seed(99)
      -- large enough for the parallel paths of the kernels
      return miles.rand(100000), miles.randn(100000, { dtype = "float64" }),
        miles.randint(0, 1000, { 100000 }), miles.randperm(1000)
    end
    miles.set_num_threads(1)
    local r1, n1, i1, p1 = draw()
    miles.set_num_threads(2)
    local r2, n2, i2, p2 = draw()
    miles.set_num_threads(before)
    assert.is_true(identical(r1, r2))
    assert.is_true(identical(n1, n2))
    assert.is_true(identical(i1, i2))
    assert.is_true(identical(p1, p2))
  end)

  it("does not depend on the layout asked for", function()
    miles.manual_seed(3)
    local a = miles.rand(4, 5)
    miles.manual_seed(3)
    local b = miles.rand(20)
    assert.is_true(identical(a:reshape(20), b))
  end)
end)

describe("distributions", function()
  it("rand is in [0, 1) with mean 1/2 and variance 1/12", function()
    miles.manual_seed(11)
    for _, dt in ipairs({ "float32", "float64" }) do
      local x = miles.rand(100000, { dtype = dt })
      assert.equal(dt, x:dtype())
      assert.is_true(x:min():item() >= 0)
      assert.is_true(x:max():item() < 1)
      assert.near(0.5, x:mean():item(), 0.005)
      assert.near(1 / 12, x:var():item(), 0.002)
      -- each tenth of [0, 1) gets about a tenth of the draws
      local tenth = x:lt(0.1):to("int64"):sum():item()
      assert.near(10000, tenth, 400)
    end
  end)

  it("randn has mean 0, std 1 and 68% within one std", function()
    miles.manual_seed(12)
    for _, dt in ipairs({ "float32", "float64" }) do
      local x = miles.randn(100000, { dtype = dt })
      assert.near(0, x:mean():item(), 0.015)
      assert.near(1, x:std():item(), 0.015)
      local within = x:abs():lt(1):to("int64"):sum():item() / 100000
      assert.near(0.6827, within, 0.01)
      assert.is_true(x:abs():max():item() < 7)
      assert.is_false(x:ne(x):to("int64"):sum():item() > 0) -- no NaN
    end
  end)

  it("randint covers [low, high) and nothing else", function()
    miles.manual_seed(13)
    local x = miles.randint(-3, 4, { 70000 })
    assert.equal("int64", x:dtype())
    assert.equal(-3, x:min():item())
    assert.equal(3, x:max():item())
    for v = -3, 3 do
      local n = x:eq(v):to("int64"):sum():item()
      assert.near(10000, n, 400)
    end
    assert.same({ 5, 5, 5 }, miles.randint(5, 6, { 3 }):totable())
    local full = miles.randint(math.mininteger, math.maxinteger, { 2000 })
    local negative = full:lt(0):to("int64"):sum():item()
    assert.near(1000, negative, 150) -- the whole int64 range, about half below 0
    local big = miles.randint(0, 2 ^ 40 // 1, { 1000 })
    assert.is_true(big:max():item() > 2 ^ 39)
    assert.is_true(big:min():item() >= 0)
  end)

  it("randperm is a permutation of 1..n", function()
    miles.manual_seed(14)
    for _, n in ipairs({ 1, 2, 10, 1000 }) do
      local p = miles.randperm(n)
      local seen = {}
      for _, v in ipairs(p:totable()) do
        assert.is_true(v >= 1 and v <= n)
        assert.is_nil(seen[v])
        seen[v] = true
      end
      assert.equal(n, #seen)
    end
    assert.same({ 0 }, miles.randperm(0):shape())
    assert.same({ 1 }, miles.randperm(1):totable())
    -- a shuffle of 1000 leaves few elements in place
    local p = miles.randperm(1000)
    local fixed = p:eq(miles.arange(1, 1001)):to("int64"):sum():item()
    assert.is_true(fixed < 10)
  end)

  it("rand_like and randn_like copy shape and dtype", function()
    local x = miles.zeros(3, 2, { dtype = "float64" })
    assert.same({ 3, 2 }, miles.rand_like(x):shape())
    assert.equal("float64", miles.randn_like(x):dtype())
  end)
end)

describe("generator state", function()
  it("get_rng_state / set_rng_state round-trip", function()
    miles.manual_seed(21)
    miles.rand(10)
    local state = miles.get_rng_state()
    assert.equal(21, state.seed)
    assert.equal(10, state.offset)
    local a = miles.randn(20)
    local b = miles.randint(0, 100, { 5 })
    miles.rand(7)
    miles.set_rng_state(state)
    assert.is_true(identical(a, miles.randn(20)))
    assert.is_true(identical(b, miles.randint(0, 100, { 5 })))
    local after = miles.get_rng_state()
    assert.equal(21, after.seed)
    assert.equal(35, after.offset)
  end)

  it("round-trips seeds that do not fit in 63 bits", function()
    local state = { seed = -1, offset = 12345 } -- 2^64 - 1 as a Lua integer
    miles.set_rng_state(state)
    local a = miles.rand(5)
    assert.equal(-1, miles.get_rng_state().seed)
    assert.equal(12350, miles.get_rng_state().offset)
    miles.set_rng_state(state)
    assert.is_true(identical(a, miles.rand(5)))
  end)

  it("draws of no elements do not move the stream", function()
    miles.manual_seed(8)
    miles.rand(0)
    miles.randn(2, 0)
    assert.equal(0, miles.get_rng_state().offset)
    local x = miles.rand(4, { dtype = "float64" })
    miles.manual_seed(8)
    H.assert_close(x, miles.rand(4, { dtype = "float64" }), 0, 0)
  end)
end)
