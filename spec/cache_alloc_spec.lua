-- The caching allocator that the GPU's memory goes through (csrc/cache_alloc.c),
-- driven here over host memory with a capacity, so its policy is checked on any
-- machine: blocks are reused by size class, a steady loop stops reaching the
-- device, and running out gives the cache back before failing.
local miles = require "miles"

describe("caching allocator", function()
  it("rounds requests up to size classes, at most a quarter above", function()
    assert.equal(512, miles._cache_alloc_class(0))
    assert.equal(512, miles._cache_alloc_class(512))
    assert.equal(640, miles._cache_alloc_class(513))
    assert.equal(1024, miles._cache_alloc_class(1024))
    assert.equal(1280, miles._cache_alloc_class(1025))
    for _, n in ipairs({ 600, 4097, 12345, 1000000, 123456789, 3 * 2 ^ 30 + 1 }) do
      local c = miles._cache_alloc_class(n)
      assert.is_true(c >= n, n)
      assert.is_true(c <= n * 1.25 + 512, n)
    end
  end)

  it("hands a freed block out again instead of asking the device", function()
    local c = miles._cache_allocator(1 << 30)
    local a = c:get(1000)
    c:put(a)
    local s = c:stats()
    assert.equal(1, s.device_allocs)
    assert.equal(1024, s.cached_bytes)
    local b = c:get(900) -- same class (1024)
    s = c:stats()
    assert.equal(1, s.device_allocs)
    assert.equal(1, s.hits)
    assert.equal(0, s.cached_bytes)
    assert.equal(1024, s.in_use_bytes)
    c:put(b)
  end)

  it("makes no device call in a steady loop of the same sizes", function()
    local c = miles._cache_allocator(1 << 30)
    local sizes = { 64 * 3 * 224 * 224 * 4, 64 * 512 * 4, 4, 1000, 77777, 64 * 8 }
    local function step()
      local held = {}
      for i, n in ipairs(sizes) do held[i] = c:get(n) end
      for i = #held, 1, -1 do c:put(held[i]) end
    end
    step()
    local after_first = c:stats().device_allocs
    assert.equal(#sizes, after_first)
    for _ = 1, 20 do step() end
    local s = c:stats()
    assert.equal(after_first, s.device_allocs)
    assert.equal(0, s.device_releases)
    assert.equal(0, s.in_use_bytes)
  end)

  it("gives its cache back to the device and retries when the device is full", function()
    local c = miles._cache_allocator(8192)
    local a, b = c:get(4096), c:get(4096)
    assert.is_not_nil(a)
    assert.is_not_nil(b)
    assert.is_nil(c:get(512)) -- full: nothing cached to give back
    c:put(a)
    c:put(b)
    assert.equal(8192, c:stats().cached_bytes)
    local big = c:get(8000) -- another class: needs the cached blocks given back
    assert.is_not_nil(big)
    local s = c:stats()
    assert.equal(0, s.cached_bytes)
    assert.equal(2, s.device_releases)
    assert.equal(8192, s.device_bytes)
    c:put(big)
  end)

  it("empty() gives every cached block back", function()
    local c = miles._cache_allocator(1 << 20)
    local hs = {}
    for i = 1, 5 do hs[i] = c:get(i * 1000) end
    for i = 1, 5 do c:put(hs[i]) end
    assert.is_true(c:stats().cached_bytes > 0)
    c:empty()
    local s = c:stats()
    assert.equal(0, s.cached_bytes)
    assert.equal(0, s.device_bytes)
    assert.equal(5, s.device_releases)
  end)

  -- (what csrc/alloc.c asks first, so that collecting garbage can come before the device)
  it("reuses a cached block or gives nothing, never asking the device", function()
    local c = miles._cache_allocator(1 << 30)
    assert.is_nil(c:reuse(1000))
    assert.equal(0, c:stats().device_allocs)
    c:put(c:get(1000))
    local b = c:reuse(900) -- the same class: the cached block, now in use
    assert.is_not_nil(b)
    local s = c:stats()
    assert.same({ 0, 1024, 1, 1 }, { s.cached_bytes, s.in_use_bytes, s.device_allocs, s.hits })
    assert.is_nil(c:reuse(1000)) -- none left in that class
    c:put(b)
  end)

  it("fails a request larger than the device", function()
    local c = miles._cache_allocator(1 << 20)
    assert.is_nil(c:get(1 << 21))
    assert.is_nil(c:get(math.maxinteger))
    assert.equal(0, c:stats().device_allocs)
  end)

  -- A CUDA graph's private pool takes the general cache's free blocks while it is
  -- captured and hands its blocks back when the graph is freed (csrc/cuda/cuda_graph.c).
  it("moves cached blocks between caches without asking the device", function()
    local general, pool = miles._cache_allocator(1 << 30), miles._cache_allocator(1 << 30)
    assert.is_nil(general:take(1000)) -- nothing cached: nil, and no device call
    assert.equal(0, general:stats().device_allocs)
    local a = general:get(1000)
    general:put(a)
    local b = general:take(900) -- the same class (1024): the cached block
    assert.is_not_nil(b)
    local s = general:stats()
    assert.same({ 0, 0, 1 }, { s.cached_bytes, s.in_use_bytes, s.device_allocs })
    assert.is_nil(general:take(2000)) -- another class: none cached
    pool:adopt(general, b) -- hand the block to the other cache
    s = pool:stats()
    assert.same({ 1024, 0, 0 }, { s.cached_bytes, s.in_use_bytes, s.device_allocs })
    local c = pool:get(1024) -- served from the adopted block
    s = pool:stats()
    assert.same({ 0, 1024, 0, 1 }, { s.cached_bytes, s.in_use_bytes, s.device_allocs, s.hits })
    pool:put(c)
    pool:empty() -- an adopted block goes back to the device like the others
    assert.equal(1, pool:stats().device_releases)
  end)
end)
