-- miles.profile: the time split of one run by module class, backward op and
-- marked section (lua/miles/profile.lua, csrc/autograd.c's node timing).
local miles = require "miles"
local H = require "helpers"
local gpu_it = H.gpu_specs(it, describe, pending)
local nn, F = miles.nn, miles.F
local profile = require "miles.profile"

-- One training step of a small conv net on dev, under a profile.
-- (host_waits: a table that gets the host waits the profiled step made, as .n)
local function profiled_step(dev, wait, host_waits)
  miles.manual_seed(3)
  local net = nn.Sequential(nn.Conv2d(2, 4, 3, { padding = 1 }), nn.BatchNorm2d(4), nn.ReLU(),
    nn.Conv2d(4, 4, 3, { padding = 1 }), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)):to(dev)
  local opt = miles.optim.SGD(net:parameters(), { lr = 0.1 })
  local x, y = miles.randn(5, 2, 6, 6):to(dev), miles.randint(1, 4, { 5 }):to(dev)
  local waits0 = dev ~= "cpu" and miles.cuda.host_waits()
  local report = miles.profile(function()
    opt:zero_grad()
    F.cross_entropy(net(x), y):backward()
    profile.section("optimizer", function() opt:step() end)
  end, { device = dev, wait = wait })
  if host_waits then host_waits.n = miles.cuda.host_waits() - waits0 end
  return report
end

local function row(report, phase, name)
  for _, r in ipairs(report.rows) do
    if r.phase == phase and r.name == name then return r end
  end
end

describe("miles.profile", function()
  it("splits a step by module class, backward op and section", function()
    local r = profiled_step("cpu")
    assert.equal(2, row(r, "forward", "Conv2d").calls)
    assert.equal(1, row(r, "forward", "BatchNorm2d").calls)
    assert.equal(1, row(r, "forward", "Linear").calls)
    assert.is_nil(row(r, "forward", "Sequential")) -- containers are not timed twice
    assert.equal(2, row(r, "backward", "conv2d").calls)
    assert.equal(1, row(r, "backward", "batch_norm").calls)
    assert.equal(1, row(r, "section", "optimizer").calls)
    local sum = r.other_ms
    for i, x in ipairs(r.rows) do
      assert.is_true(x.ms >= 0)
      if i > 1 then assert.is_true(r.rows[i - 1].ms >= x.ms) end -- largest first
      sum = sum + x.ms
    end
    assert.is_true(math.abs(sum - r.total_ms) < 1e-6 * math.max(1, r.total_ms) or r.other_ms == 0)
    local text = miles.profile_format(r)
    assert.truthy(text:find("forward%s+Conv2d"))
    assert.truthy(text:find("total"))
  end)

  it("counts a piece inside another once: the outer row has its own time only", function()
    local lin = nn.Linear(200, 200)
    local x = miles.randn(400, 200, { requires_grad = true })
    -- (timings: on a loaded machine a preemption can land in the outer row's own
    -- few statements, so the comparison of times gets three tries)
    local own_less
    for _ = 1, 3 do
      local r = miles.profile(function()
        profile.section("outer", function()
          local y = lin(x)
          y:sum():backward()
        end)
      end)
      local outer, inner, back = row(r, "section", "outer"), row(r, "forward", "Linear"), row(r, "backward", "matmul")
      assert.is_not_nil(inner)
      assert.is_not_nil(back)
      local sum = 0
      for _, x_ in ipairs(r.rows) do sum = sum + x_.ms end
      assert.is_true(sum <= r.total_ms * 1.001 + 1e-3, ("rows %.3f ms, total %.3f ms"):format(sum, r.total_ms))
      own_less = outer.ms < inner.ms + back.ms
      if own_less then break end
    end
    assert.is_true(own_less)
  end)

  it("says what the collections that tensor memory paced took inside it", function()
    local r = miles.profile(function()
      for _ = 1, 20 do local _ = miles.zeros(1024 * 1024) end -- 80 MiB: past the 32 MiB floor
    end)
    assert.is_true(r.collector.cycles >= 1)
    assert.is_true(r.collector.ms >= 0 and r.collector.ms <= r.total_ms)
    assert.truthy(miles.profile_format(r):find("Lua collector paced by tensor memory: [%d.]+ ms in %d+ cycles"))
    assert.equal(0, miles.profile(function() end).collector.cycles)
  end)

  it("leaves nothing running after it, even when the function or the device fails", function()
    assert.matches("boom", H.error_of(miles.profile, function() error("boom") end))
    assert.is_false(profile.active())
    if not H.cuda_available then
      assert.is_not_nil(H.error_of(miles.profile, function() end, { device = "cuda" }))
      assert.is_false(profile.active())
      assert.is_not_nil(nn.Linear(3, 2)(miles.randn(1, 3)))
    end
    local r = miles.profile(function() end)
    assert.same({}, r.rows)
  end)

  it("checks its arguments", function()
    assert.matches("expects a function", H.error_of(miles.profile, 42))
    assert.matches("unknown option 'devcie'", H.error_of(miles.profile, function() end, { devcie = "cpu" }))
    assert.matches("device must be", H.error_of(miles.profile, function() end, { device = "gpu" }))
    assert.matches("wait must be a boolean", H.error_of(miles.profile, function() end, { wait = 0 }))
    assert.matches("already running", H.error_of(miles.profile, function()
      miles.profile(function() end)
    end))
  end)

  gpu_it("splits a GPU step the same way", function()
    local r = profiled_step("cuda")
    assert.equal(2, row(r, "forward", "Conv2d").calls)
    assert.equal(2, row(r, "backward", "conv2d").calls)
    assert.equal(1, row(r, "section", "optimizer").calls)
  end)

  gpu_it("times the host alone with wait = false: the same rows, nothing waited for", function()
    profiled_step("cuda") -- (a first run tunes the convolutions, which waits)
    local waits = {}
    local r = profiled_step("cuda", false, waits)
    assert.equal(0, waits.n)
    assert.equal(2, row(r, "forward", "Conv2d").calls)
    assert.equal(2, row(r, "backward", "conv2d").calls)
    miles.cuda.synchronize()
  end)
end)
