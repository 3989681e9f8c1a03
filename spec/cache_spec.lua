-- miles.data.cache: build once, memory-map afterwards; rebuild when the params
-- change or a file no longer matches its checksum; an interrupted build (an error,
-- SIGKILL at each stage and at a random time) never leaves a cache that a later
-- run trusts. Also miles.checksum_file and the progress bars.
local miles = require "miles"
local cache = require "miles.data.cache"
local progress = require "miles.progress"
local checkpoint = require "miles.checkpoint"
local H = require "helpers"

local D = miles._data

local tmpdir, read_file, write_file, exists, entries = H.tmpdir, H.read_file, H.write_file, H.exists, H.entries
local miles_bin = H.miles_bin

-- Are two tensors exactly equal?
local function same(a, b)
  return table.concat(a:shape(), "x") == table.concat(b:shape(), "x") and H.max_abs_diff(a, b) == 0
end

-- The arrays a test builder makes, from a seed.
local function make_arrays(seed, n)
  miles.manual_seed(seed)
  n = n or 64
  return {
    audio = miles.randn(n, 1, 8, 8),
    image = (miles.rand(n, 1, 8, 8) * 255):to("uint8"),
    labels = miles.randint(1, 11, { n }):to("int64"),
  }
end

-- A builder that counts its calls.
local function counting_builder(seed)
  local b = { calls = 0 }
  setmetatable(b, { __call = function(self, prog)
    self.calls = self.calls + 1
    for i = 1, 4 do prog("making", i, 4) end
    return make_arrays(seed)
  end })
  return b
end

local QUIET = { quiet = true }

-- opts for a cache in dir (quiet, plus extra fields).
local function in_dir(dir, extra)
  local o = { dir = dir, quiet = true }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

describe("miles.checksum_file", function()
  it("computes XXH64 (as the reference library) and the size", function()
    local dir = tmpdir()
    local cases = {
      { "", "xxh64:ef46db3751d8e999" },
      { "abc", "xxh64:44bc2cf5ad770999" },
    }
    local bytes = {}
    for i = 0, 999 do bytes[#bytes + 1] = string.char(i % 251) end
    cases[3] = { table.concat(bytes), "xxh64:f306f04aa88b54d3" }
    local big = {}
    for i = 0, (3 << 20) - 1, 251 do big[#big + 1] = cases[3][1]:sub(1, 251) end
    cases[4] = { table.concat(big):sub(1, 3 << 20), "xxh64:ad33635a7f541a18" } -- several reads
    for i, case in ipairs(cases) do
      write_file(dir .. "/f", case[1])
      local sum, size = miles.checksum_file(dir .. "/f")
      assert.equal(case[2], sum, "case " .. i)
      assert.equal(#case[1], size)
      assert.equal(case[2], D.checksum_string(case[1]))
    end
    local err = H.error_of(miles.checksum_file, dir .. "/missing%s.npy")
    assert.truthy(err:find("missing%s.npy: No such file", 1, true), err)
    D.remove_tree(dir)
  end)
end)

describe("cache.dir", function()
  it("is $MILES_CACHE, else $XDG_CACHE_HOME/miles, else ~/.cache/miles", function()
    local dir = tmpdir()
    local script = dir .. "/dir.lua"
    write_file(script, 'io.write(require("miles.data.cache").dir())')
    local function run(env)
      local p = io.popen(("env -u MILES_CACHE -u XDG_CACHE_HOME %s '%s' '%s'"):format(env,
        miles_bin(), script))
      local out = p:read("a")
      p:close()
      return out
    end
    assert.equal("/m/c", run("MILES_CACHE=/m/c XDG_CACHE_HOME=/x HOME=/h"))
    assert.equal("/x/miles", run("XDG_CACHE_HOME=/x HOME=/h"))
    assert.equal("/h/.cache/miles", run("HOME=/h"))
    assert.equal("/h/.cache/miles", run("MILES_CACHE= XDG_CACHE_HOME= HOME=/h"))
    D.remove_tree(dir)
  end)
end)

describe("cache.build", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() D.remove_tree(dir) end)

  it("builds once, then memory-maps the arrays without calling the builder", function()
    local builder = counting_builder(1)
    local want = make_arrays(1)
    local a, info = cache.build("toy", { n = 64, seed = 1 }, builder, in_dir(dir))
    assert.equal(1, builder.calls)
    assert.is_true(info.built)
    assert.equal("not built yet", info.reason)
    for k, t in pairs(want) do assert.is_true(same(t, a[k]), k) end
    local b, info2 = cache.build("toy", { seed = 1, n = 64 }, builder, in_dir(dir))
    assert.equal(1, builder.calls)
    assert.is_false(info2.built)
    for k, t in pairs(want) do
      assert.is_true(same(t, b[k]), k)
      assert.equal(t:dtype(), b[k]:dtype())
    end
    assert.same({ "toy" }, entries(dir))
    assert.same({ "audio.npy", "image.npy", "labels.npy", "manifest.json" }, entries(dir .. "/toy"))
    local m = checkpoint.json_decode(read_file(dir .. "/toy/manifest.json"))
    assert.equal("miles-cache", m.format)
    assert.same({ n = 64, seed = 1 }, m.params)
    assert.equal(miles.version, m.miles_version)
    assert.truthy(m.created:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"))
    assert.equal(miles.checksum_file(dir .. "/toy/audio.npy"), m.files.audio.checksum)
    assert.same({ 64, 1, 8, 8 }, m.files.image.shape)
    assert.equal("uint8", m.files.image.dtype)
  end)

  it("rebuilds when the params change", function()
    local builder = counting_builder(2)
    cache.build("toy", { seed = 2 }, builder, in_dir(dir))
    local _, info = cache.build("toy", { seed = 2, hop = 512 }, builder, in_dir(dir))
    assert.equal(2, builder.calls)
    assert.equal("the parameters changed", info.reason)
    cache.build("toy", { seed = 2, hop = 512 }, builder, in_dir(dir))
    assert.equal(2, builder.calls)
    assert.same({ "toy" }, entries(dir))
  end)

  it("rebuilds when a file no longer matches its checksum or size", function()
    local builder = counting_builder(3)
    local want = make_arrays(3)
    cache.build("toy", {}, builder, in_dir(dir))
    local path = dir .. "/toy/audio.npy"
    local bytes = read_file(path)
    local k = #bytes - 100
    write_file(path, bytes:sub(1, k - 1) .. string.char((bytes:byte(k) + 1) % 256) .. bytes:sub(k + 1))
    local none, why = cache.open("toy", {}, in_dir(dir))
    assert.is_nil(none)
    assert.equal("audio.npy does not match its checksum", why)
    local a, info = cache.build("toy", {}, builder, in_dir(dir))
    assert.equal(2, builder.calls)
    assert.equal("audio.npy does not match its checksum", info.reason)
    assert.is_true(same(want.audio, a.audio))
    -- a truncated file
    local img = dir .. "/toy/image.npy"
    write_file(img, read_file(img):sub(1, 200))
    local _, info2 = cache.build("toy", {}, builder, in_dir(dir))
    assert.equal(3, builder.calls)
    assert.truthy(info2.reason:find("image.npy has 200 bytes", 1, true), info2.reason)
    -- a missing file, and a directory without a manifest
    os.remove(dir .. "/toy/labels.npy")
    assert.equal("labels.npy is missing", select(2, cache.open("toy", {}, in_dir(dir))))
    os.remove(dir .. "/toy/manifest.json")
    assert.equal("not built yet", select(2, cache.open("toy", {}, in_dir(dir))))
    cache.build("toy", {}, builder, in_dir(dir))
    assert.equal(4, builder.calls)
  end)

  it("leaves nothing behind when the builder fails, and builds next time", function()
    local err = H.error_of(cache.build, "toy", {}, function(prog)
      prog("making", 1, 10)
      error("disk image unreadable")
    end, in_dir(dir))
    assert.truthy(err:find("cache.build: toy: the build failed: .*disk image unreadable"), err)
    assert.same({}, entries(dir))
    err = H.error_of(cache.build, "toy", {}, function() return { x = "not a tensor" } end, in_dir(dir))
    assert.truthy(err:find("'x' is a string, expected a tensor", 1, true), err)
    assert.same({}, entries(dir))
    local builder = counting_builder(4)
    cache.build("toy", {}, builder, in_dir(dir))
    assert.equal(1, builder.calls)
  end)

  it("never trusts a build killed with SIGKILL at any stage", function()
    local script = dir .. "/child.lua"
    write_file(script, [[
      local cache = require "miles.data.cache"
      local miles = require "miles"
      local dir, stage = arg[1], arg[2]
      cache.build("toy", { v = 1 }, function()
        miles.manual_seed(5)
        return { audio = miles.randn(64, 1, 8, 8), labels = miles.arange(1, 65) }
      end, { dir = dir .. "/c", quiet = true, hook = function(s)
        if s == stage then os.execute("kill -9 " .. miles._data.getpid()) end
      end })
    ]])
    miles.manual_seed(5)
    local want = miles.randn(64, 1, 8, 8)
    for _, stage in ipairs({ "built", "written", "manifest", "renamed" }) do
      D.remove_tree(dir .. "/c")
      os.execute(("'%s' '%s' '%s' %s >/dev/null 2>&1"):format(miles_bin(), script, dir, stage))
      local left = entries(dir .. "/c")
      local builder = counting_builder(6)
      if stage == "renamed" then
        -- killed after the rename: the entry is complete and trusted
        assert.same({ "toy" }, left)
        local a = cache.build("toy", { v = 1 }, builder, in_dir(dir .. "/c"))
        assert.equal(0, builder.calls)
        assert.is_true(same(want, a.audio))
      else
        assert.equal(1, #left, stage)
        assert.truthy(left[1]:match("^toy%.tmp%.%d+$"), stage .. ": " .. left[1])
        assert.is_nil((cache.open("toy", { v = 1 }, in_dir(dir .. "/c"))), stage)
        cache.build("toy", { v = 1 }, builder, in_dir(dir .. "/c"))
        assert.equal(1, builder.calls, stage)
        assert.same({ "toy" }, entries(dir .. "/c"), stage .. ": the stale directory is removed")
      end
    end
  end)

  it("never trusts a build killed at a random moment", function()
    local script = dir .. "/slow.lua"
    write_file(script, [[
      local cache = require "miles.data.cache"
      local miles = require "miles"
      cache.build("big", { v = 2 }, function(prog)
        local parts = {}
        for i = 1, 6 do
          miles.manual_seed(i)
          parts[i] = miles.randn(1, 512, 1024)   -- 2 MB each
          prog("making", i, 6)
        end
        return { a = miles.cat(parts, 1), b = miles.cat(parts, 1) * 2, c = miles.cat(parts, 1) * 3 }
      end, { dir = arg[1], quiet = true })
    ]])
    local outcomes = {}
    for _, delay in ipairs({ 0.1, 0.3, 0.45, 0.5, 0.55, 0.6, 0.8 }) do
      local c = dir .. "/c" .. tostring(delay):gsub("%.", "_")
      local p = io.popen(("'%s' '%s' '%s' >/dev/null 2>&1 & echo $!"):format(miles_bin(), script, c))
      local pid = p:read("l")
      p:close()
      os.execute("sleep " .. delay)
      os.execute("kill -9 " .. pid .. " 2>/dev/null")
      for _ = 1, 100 do
        if not D.pid_alive(tonumber(pid)) then break end
        os.execute("sleep 0.02")
      end
      local a = cache.open("big", { v = 2 }, in_dir(c))
      if a then
        outcomes[#outcomes + 1] = "complete"
        assert.is_true(same(a.a * 2, a.b))
        assert.is_true(same(a.a * 3, a.c))
      else
        outcomes[#outcomes + 1] = exists(c .. "/big") and "BAD" or "none"
        assert.is_false(exists(c .. "/big/manifest.json"), "an untrusted entry has a manifest")
      end
    end
    assert.is_nil(table.concat(outcomes, " "):find("BAD"))
  end)

  it("keeps the temporary directory of a build that still runs", function()
    D.mkdir_p(dir .. "/toy.tmp.1") -- pid 1 runs
    D.mkdir_p(dir .. "/toy.tmp.999999999") -- no such process
    cache.build("toy", {}, counting_builder(7), in_dir(dir))
    assert.same({ "toy", "toy.tmp.1" }, entries(dir))
  end)

  it("checks its arguments", function()
    local err = H.error_of(cache.build, "../x", {}, function() end, QUIET)
    assert.truthy(err:find("bad cache name '../x'", 1, true), err)
    err = H.error_of(cache.build, "x", { f = function() end }, function() end, in_dir(dir))
    assert.truthy(err:find("cache.build: params:", 1, true), err)
    err = H.error_of(cache.build, "x", {}, nil, in_dir(dir))
    assert.truthy(err:find("builder must be a function", 1, true), err)
  end)

  it("clears an entry", function()
    cache.build("toy", {}, counting_builder(8), in_dir(dir))
    cache.clear("toy", in_dir(dir))
    assert.same({}, entries(dir))
  end)
end)

describe("miles.progress", function()
  -- A stream that records what is written.
  local function recorder()
    local r = { text = "" }
    function r:write(...)
      for _, s in ipairs({ ... }) do self.text = self.text .. s end
      return self
    end
    function r:flush() end
    return r
  end

  -- A clock that moves by `step` seconds on each call.
  local function fake_clock(step)
    local t = 0
    return function()
      t = t + step
      return t
    end
  end

  it("prints plain lines every 10% when not on a terminal", function()
    local out = recorder()
    local bar = progress.new({ label = "clips", total = 100, stream = out, tty = false,
      clock = fake_clock(0.5) })
    for i = 1, 100 do bar:update(i) end
    bar:finish()
    local lines = {}
    for line in out.text:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(11, #lines)
    assert.truthy(lines[1]:find("^clips:   0%%  0/100"), lines[1])
    assert.truthy(lines[2]:find("^clips:  10%%  10/100  [%d.]+/s  ETA %d+:%d%d$"), lines[2])
    assert.truthy(lines[11]:find("^clips: 100%%  100/100  .* in "), lines[11])
    assert.is_nil(out.text:find("\r", 1, true))
  end)

  it("prints only a line every `every` seconds when sparse and not on a terminal", function()
    local out = recorder()
    local bar = progress.new({ label = "epoch 1/3", total = 100, stream = out, tty = false,
      sparse = true, every = 10, clock = fake_clock(0.5) })
    for i = 1, 100 do bar:update(i) end
    bar:finish()
    local lines = {}
    for line in out.text:gmatch("[^\n]+") do lines[#lines + 1] = line end
    -- the clock moves 0.5 s per call: 50 s from the start to the last update,
    -- a line at 10, 20, 30, 40 and 50 s, none at the start or at finish
    assert.equal(5, #lines)
    assert.truthy(lines[1]:find("^epoch 1/3:  %d+%%  %d+/100  [%d.]+/s  ETA %d+:%d%d$"), lines[1])
  end)

  it("redraws in place on a terminal, with the bar and the ETA", function()
    local out = recorder()
    local bar = progress.new({ label = "x", total = 4, stream = out, tty = true, width = 4,
      interval = 0, clock = fake_clock(1) })
    bar:update(1)
    assert.truthy(out.text:find("\rx  %[#%.%.%.%]   25%%  1/4  [%d.]+/s  ETA 0:0%d\27%[K"), out.text)
    bar:update(4)
    bar:finish()
    assert.truthy(out.text:find("\rx  %[####%]  100%%  4/4  .* in 0:0%d\27%[K\n$"), out.text)
  end)

  it("is silent when quiet, and tracks one bar per label", function()
    local out = recorder()
    local bar = progress.new({ total = 3, stream = out, quiet = true })
    bar:update(1)
    bar:finish()
    assert.equal("", out.text)
    local t = progress.tracker({ stream = out, tty = false })
    t("a", 1, 2)
    t("a", 2, 2)
    t("b", 1, 1)
    t.finish()
    assert.truthy(out.text:find("a: 100%", 1, true))
    assert.truthy(out.text:find("b: 100%", 1, true))
    assert.equal("0:00", progress.format_time(0))
    assert.equal("1:01:01", progress.format_time(3661))
    assert.equal("?", progress.format_time(nil))
  end)
end)
