-- Memory: tensor storage is given back when Lua collects the tensors, at once for
-- <close> variables and :free(), and the collector is paced by the bytes tensors
-- hold, so loops that allocate do not grow without bound.
local miles = require "miles"
local core = require "miles.core"
local H = require "helpers"
local gpu_it = H.gpu_specs(it, describe, pending)

local function live()
  return miles.memory().cpu.live_bytes
end

-- Collect everything that is garbage now (two passes: finalizers, then memory).
local function settle()
  collectgarbage()
  collectgarbage()
end

describe("memory accounting", function()
  before_each(settle)

  it("reports live, peak and allocation counts", function()
    local m = miles.memory()
    assert.is_number(m.cpu.live_bytes)
    assert.is_true(m.cpu.peak_bytes >= m.cpu.live_bytes)
    assert.is_number(m.cuda.live_bytes)
    local n0 = m.cpu.allocations
    local x = miles.zeros(10)
    assert.equal(n0 + 1, miles.memory().cpu.allocations)
    assert.equal(40, x:numel() * 4)
  end)

  it("counts the bytes of each dtype", function()
    local base = live()
    local sizes = { float32 = 4, float64 = 8, int64 = 8, uint8 = 1, bool = 1 }
    for dt, size in pairs(sizes) do
      local x = miles.zeros(100, { dtype = dt })
      assert.equal(base + 100 * size, live(), dt)
      x:free()
      assert.equal(base, live(), dt)
    end
  end)

  it("goes back down once the tensors are collected", function()
    local base = live()
    local xs = {}
    for i = 1, 10 do xs[i] = miles.ones(1000) end
    assert.equal(base + 10 * 4000, live())
    xs = nil
    settle()
    assert.equal(base, live())
  end)

  it("frees intermediate results of expressions", function()
    local base = live()
    local x = miles.ones(1000)
    local s = ((x * 2 + 1) / 3):sum():item()
    assert.equal(1000, s)
    settle()
    assert.equal(base + 4000, live())
    x = nil
    settle()
    assert.equal(base, live())
  end)

  it("views add no storage and keep their base's storage alive", function()
    local base = live()
    local x = miles.zeros(100, 10)
    local v = x:t():narrow(1, 1, 5):unsqueeze(1):expand(2, 5, 100)
    assert.equal(base + 4000, live())
    x:free()
    assert.equal(base + 4000, live()) -- v still needs it
    assert.same({ 2, 5, 100 }, v:shape())
    assert.equal(0, v:sum():item())
    v = nil
    settle()
    assert.equal(base, live())
  end)

  it("a <close> variable frees its storage at the end of the scope", function()
    local base = live()
    collectgarbage("stop")
    finally(function() collectgarbage("restart") end)
    do
      local t <close> = miles.zeros(250000)
      assert.equal(base + 1000000, live())
    end
    assert.equal(base, live())
  end)

  it(":free() frees at once, and twice is harmless", function()
    local base = live()
    collectgarbage("stop")
    finally(function() collectgarbage("restart") end)
    local t = miles.zeros(1000, { dtype = "float64" })
    assert.equal(base + 8000, live())
    t:free()
    assert.equal(base, live())
    t:free()
    assert.equal(base, live())
  end)

  it("a tensor kept in a table stays alive across collections", function()
    local keep = { miles.full({ 4 }, 3) }
    settle()
    assert.same({ 3, 3, 3, 3 }, keep[1]:totable())
  end)

  it("failed assignments and fills leak nothing", function()
    local base = live()
    do
      local x = miles.zeros(1000)
      assert.is_false(pcall(function() x[1] = "a" end))
      assert.is_false(pcall(function() x[2000] = 1 end))
      assert.is_false(pcall(function() x[x:gt(0):reshape(1, 1000)] = 1 end))
      assert.is_false(pcall(function() x:fill_({}) end))
      assert.is_false(pcall(function() return x:view(3, -1) end))
      assert.is_false(pcall(function() return x:narrow(1, 999, 5) end))
    end
    settle()
    assert.equal(base, live())
  end)

  it("autograd graphs are freed with their outputs", function()
    local base = live()
    do
      local w = miles.ones(1000, { requires_grad = true })
      local loss = ((w * 3):exp() * w):sum()
      loss:backward()
      assert.is_not_nil(w.grad)
    end
    settle()
    assert.equal(base, live())
  end)
end)

describe("collector pacing", function()
  before_each(settle)

  it("keeps a loop of 120 KB allocations bounded without collectgarbage()", function()
    local base = live()
    local high = 0
    -- 480 MB in all. (Below the size where kernels go parallel: on a busy machine
    -- thread start-up, not memory, would set the time.)
    for _ = 1, 2000 do
      local x = miles.zeros(30000)
      x = x + 1
      high = math.max(high, live() - base)
    end
    assert.is_true(high < 64 * 1000000, "live memory grew to " .. high .. " bytes")
  end)

  it("collects once per 32 MiB of host memory allocated", function()
    local cycles0 = core.collector_stats()
    for _ = 1, 60 do -- 240 MiB of garbage, 4 MiB at a time
      local _ = miles.zeros(1024 * 1024)
    end
    local cycles = core.collector_stats() - cycles0
    -- (a full cycle per 8 MB, as the pacing once did, made 30 here)
    assert.is_true(cycles >= 7 and cycles <= 8, cycles .. " collections")
  end)

  gpu_it("collects rarely while much GPU memory is live: it waits for as many new bytes", function()
    local held = miles.zeros(32 * 1024 * 1024, { device = "cuda" }) -- 128 MiB live
    for _ = 1, 10 do local _ = miles.zeros(1024 * 1024, { device = "cuda" }) end -- (one cycle sees it)
    local cycles0 = core.collector_stats()
    for _ = 1, 60 do -- 240 MiB of garbage, 4 MiB at a time
      local _ = miles.zeros(1024 * 1024, { device = "cuda" })
    end
    local cycles = core.collector_stats() - cycles0
    -- (a cycle per live bytes allocated, or per half that when the cache runs dry)
    assert.is_true(cycles >= 1 and cycles <= 4, cycles .. " collections")
    held:free()
  end)

  gpu_it("collects before asking the GPU for a block that garbage may hold", function()
    local function cycles_now() return (core.collector_stats()) end
    local MiB = 262144 -- float32 values
    local held = miles.zeros(128 * MiB, { device = "cuda" }) -- live: cycles wait for ~128 MiB
    local cycles = cycles_now()
    repeat local _ = miles.zeros(MiB, { device = "cuda" }) until cycles_now() > cycles
    miles.cuda.empty_cache() -- (a cycle just ran: nothing pending, no block cached)
    for _ = 1, 3 do local _ = miles.zeros(24 * MiB, { device = "cuda" }) end -- 72 MiB of garbage
    local allocs0, cycles0 = miles.cuda.memory_stats().allocations, cycles_now()
    -- none cached, the garbage holds three, and over half 128 MiB came since the cycle
    local x = miles.zeros(24 * MiB, { device = "cuda" })
    assert.equal(cycles0 + 1, cycles_now())
    assert.equal(allocs0, miles.cuda.memory_stats().allocations)
    x:free()
    held:free()
  end)

  it("keeps a loop of small allocations bounded too", function()
    local base = live()
    local high = 0
    for _ = 1, 20000 do -- 20000 tensors of 4 KB
      local x = miles.ones(1000)
      local _ = x * 2
      high = math.max(high, live() - base)
    end
    assert.is_true(high < 64 * 1000000, "live memory grew to " .. high .. " bytes")
  end)
end)
