-- Checkpoints: miles.save_safetensors / miles.load_safetensors (the C reader and
-- writer), the file written by Python (spec/fixtures/make_safetensors_fixtures.py),
-- malformed files built here byte by byte, and miles.checkpoint (model, optimizer
-- and meta; atomic saves that survive a SIGKILL in the middle).
local miles = require "miles"
local H = require "helpers"
local checkpoint = require "miles.checkpoint"
local nn = miles.nn

local has_optim, optim = pcall(require, "miles.optim")

-- Temporary directories and whole-file reads and writes (spec/helpers.lua).
local tmpdir, rmdir, write_file, read_file = H.tmpdir, H.rmdir, H.write_file, H.read_file

-- The names of the files in dir (sorted).
local function list_dir(dir)
  local out = {}
  local p = io.popen("ls -A '" .. dir .. "'")
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

-- A safetensors file from a header text and data bytes.
local function st_bytes(header, data)
  return string.pack("<I8", #header) .. header .. (data or "")
end

-- Assert that loading bytes as a file fails with a message naming the file and
-- containing each given fragment.
local function expect_load_error(dir, bytes, ...)
  local path = dir .. "/bad.safetensors"
  write_file(path, bytes)
  local err = H.error_of(miles.load_safetensors, path)
  assert.truthy(err:find(path, 1, true), "the message names the file: " .. err)
  for _, frag in ipairs({ ... }) do
    assert.truthy(err:find(frag, 1, true), ("expected '%s' in: %s"):format(frag, err))
  end
  return err
end

describe("safetensors files", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rmdir(dir) end)

  it("round-trip every dtype, 0-dim, empty and non-contiguous tensors, and metadata", function()
    local path = dir .. "/t.safetensors"
    local src = {
      f32 = miles.randn(3, 4),
      f64 = miles.randn(5, { dtype = "float64" }),
      i64 = miles.tensor({ -(1 << 62), 0, 7 }),
      u8 = miles.tensor({ 0, 200, 255 }, { dtype = "uint8" }),
      bool = miles.tensor({ true, false, true }),
      scalar = miles.tensor(2.5),
      empty = miles.zeros(0, 4),
      transposed = miles.randn(4, 3):t(),
    }
    miles.save_safetensors(path, src, { epoch = "3", lr = 0.001, flag = true })
    local got, md = miles.load_safetensors(path)
    for name, t in pairs(src) do
      assert.is_not_nil(got[name], name)
      assert.equals(t:dtype(), got[name]:dtype(), name)
      assert.same(t:shape(), got[name]:shape(), name)
      if t:numel() > 0 then H.assert_close(got[name], t, 0, 0, name) end
    end
    assert.same({ epoch = "3", lr = "0.001", flag = "true" }, md)
  end)

  it("writes names sorted, offsets contiguous and the header padded to 8 bytes", function()
    local path = dir .. "/t.safetensors"
    miles.save_safetensors(path, { b = miles.zeros(3), a = miles.ones(2, { dtype = "float64" }),
                                   c = miles.zeros(1, { dtype = "uint8" }) })
    local bytes = read_file(path)
    local n = string.unpack("<I8", bytes)
    assert.equals(0, (8 + n) % 8)
    local header = bytes:sub(9, 8 + n)
    assert.truthy(header:match("^{.*} *$"))
    local a, b, c = header:find('"a"', 1, true), header:find('"b"', 1, true), header:find('"c"', 1, true)
    assert.is_true(a < b and b < c, "sorted: " .. header)
    assert.truthy(header:find('"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}', 1, true))
    assert.truthy(header:find('"b":{"dtype":"F32","shape":[3],"data_offsets":[16,28]}', 1, true))
    assert.truthy(header:find('"c":{"dtype":"U8","shape":[1],"data_offsets":[28,29]}', 1, true))
    assert.equals(8 + n + 29, #bytes)
  end)

  it("reads the file Python's layout produced", function()
    local t, md = miles.load_safetensors(H.fixtures .. "safetensors/python.safetensors")
    H.assert_close(t["a.f32"], { { 0, 0.5, 1 }, { 1.5, 2, 2.5 } }, 0, 0)
    assert.equals("float32", t["a.f32"]:dtype())
    H.assert_close(t["b.f64"], { 1.5, -2.25, 1e-300 }, 0, 0)
    assert.equals("float64", t["b.f64"]:dtype())
    assert.equals(0, #t["c.i64"]:shape())
    assert.equals(-7, t["c.i64"]:item())
    assert.same({ 1 << 40, -1 }, t["c.i64_big"]:totable())
    assert.same({ 0, 1, 254, 255 }, t["d.u8"]:totable())
    assert.same({ true, false, true }, t["e.bool"]:totable())
    assert.same({ 0, 3 }, t.empty:shape())
    H.assert_close(t['na\u{ef}ve "q"'], { 3 }, 0, 0)
    assert.same({ format = "pt", note = "made by python" }, md)
  end)

  it("skips unknown fields and accepts an empty header object", function()
    local path = dir .. "/x.safetensors"
    write_file(path, st_bytes('{"x": {"dtype": "U8", "shape": [2], "extra": [1, {"a": null}], '
      .. '"data_offsets": [0, 2]}}', "\1\2"))
    assert.same({ 1, 2 }, miles.load_safetensors(path).x:totable())
    write_file(path, st_bytes("{}      "))
    local t, md = miles.load_safetensors(path)
    assert.same({}, t)
    assert.same({}, md)
  end)

  it("rejects malformed files with messages naming the file and the fault", function()
    local ok_entry = '{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    local data8 = string.rep("\0", 8)
    expect_load_error(dir, "abc", "too short")
    expect_load_error(dir, string.pack("<I8", 1000) .. "{}", "bad header length 1000")
    expect_load_error(dir, string.pack("<I8", -1) .. "{}", "bad header length")
    expect_load_error(dir, string.pack("<I8", 0), "bad header length 0")
    expect_load_error(dir, st_bytes("[1,2]"), "not a JSON object")
    expect_load_error(dir, st_bytes(ok_entry:sub(1, 30)), "malformed header")
    expect_load_error(dir, st_bytes(ok_entry .. "x", data8), "unexpected text after")
    expect_load_error(dir, st_bytes(ok_entry:gsub("F32", "F16"), data8), "'x'", "dtype 'F16'")
    expect_load_error(dir, st_bytes(ok_entry:gsub("%[2%]", "[3]"), data8),
      "tensor 'x'", "need 12 bytes", "hold 8")
    expect_load_error(dir, st_bytes(ok_entry, "\0\0\0\0"), "tensor 'x'", "run past the end",
      "truncated")
    expect_load_error(dir, st_bytes(ok_entry:gsub("%[0,8%]", "[8,0]"), data8), "end before")
    expect_load_error(dir, st_bytes('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
      .. '"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', data8), "overlap")
    expect_load_error(dir, st_bytes('{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
      .. '"x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', "\0\0"), "'x' appears twice")
    expect_load_error(dir, st_bytes('{"x":{"shape":[2],"data_offsets":[0,8]}}', data8),
      "lacks its dtype")
    expect_load_error(dir, st_bytes(ok_entry:gsub("%[2%]", "[-2]"), data8),
      "non-negative integer")
    expect_load_error(dir, st_bytes(ok_entry:gsub("%[2%]", "[2.0]"), data8), "not a fraction")
    expect_load_error(dir, st_bytes(ok_entry:gsub("%[2%]", "[1,1,1,1,1,1,1,1,2]"), data8),
      "more than 8 dims")
    expect_load_error(dir, st_bytes(ok_entry:gsub("%[2%]", "[99999999999999999999]"), data8),
      "integer too large")
    expect_load_error(dir, st_bytes(ok_entry:gsub("%[2%]", "[4294967296,4294967296]"), data8),
      "size overflows")
    expect_load_error(dir, st_bytes('{"a\tb":{}}'), "control character")
    expect_load_error(dir, st_bytes('{"a\\qb":{}}'), "bad escape")
    expect_load_error(dir, st_bytes('{"a\\u0000":{}}'), "NUL")
    expect_load_error(dir, st_bytes('{"a\\ud800":{}}'), "surrogate")
    expect_load_error(dir, st_bytes('{"__metadata__":{"k":1}}'), "metadata 'k' is not a string")
    expect_load_error(dir, st_bytes('{"__metadata__":{},"__metadata__":{}}'), "twice")
    expect_load_error(dir, st_bytes('{"x":' .. string.rep("[", 100) .. '}'), "malformed header")
  end)

  it("survives random corruption and truncation (errors, never crashes)", function()
    local good = read_file(H.fixtures .. "safetensors/python.safetensors")
    local path = dir .. "/fuzz.safetensors"
    local rng = 12345 -- a small LCG, so the cases are the same on every run
    local function rand(n)
      rng = (rng * 1103515245 + 12345) % 2147483648
      return rng % n + 1
    end
    local loaded, refused = 0, 0
    for _ = 1, 400 do
      local bytes = good
      for _ = 1, rand(3) do
        local i = rand(#bytes)
        bytes = bytes:sub(1, i - 1) .. string.char(rand(256) - 1) .. bytes:sub(i + 1)
      end
      if rand(4) == 1 then bytes = bytes:sub(1, rand(#bytes)) end
      write_file(path, bytes)
      local ok, err = pcall(miles.load_safetensors, path)
      if ok then
        loaded = loaded + 1
      else
        refused = refused + 1
        assert.truthy(tostring(err):find(path, 1, true), tostring(err))
      end
    end
    assert.is_true(loaded > 0 and refused > 0)
  end)

  it("reports missing files and directories", function()
    local err = H.error_of(miles.load_safetensors, dir .. "/none.safetensors")
    assert.truthy(err:find("none.safetensors: No such file", 1, true), err)
    err = H.error_of(miles.load_safetensors, dir)
    assert.truthy(err:find("is a directory", 1, true), err)
  end)

  it("rejects what cannot be saved, naming it", function()
    local path = dir .. "/t.safetensors"
    local err = H.error_of(miles.save_safetensors, path, { [1] = miles.zeros(1) })
    assert.truthy(err:find("names must be strings", 1, true), err)
    err = H.error_of(miles.save_safetensors, path, { w = 3 })
    assert.truthy(err:find("'w' is a number, not a tensor", 1, true), err)
    err = H.error_of(miles.save_safetensors, path, { __metadata__ = miles.zeros(1) })
    assert.truthy(err:find("reserved", 1, true), err)
    err = H.error_of(miles.save_safetensors, path, { w = miles.zeros(1) }, { k = {} })
    assert.truthy(err:find("metadata 'k' must be a string", 1, true), err)
    err = H.error_of(miles.save_safetensors, dir .. "/no/such/dir/t.safetensors",
      { w = miles.zeros(1) })
    assert.truthy(err:find("no/such/dir/t.safetensors: save: No such file", 1, true), err)
    assert.same({}, list_dir(dir))
  end)

  it("replaces a file whole and leaves no temporary file behind", function()
    local path = dir .. "/t.safetensors"
    miles.save_safetensors(path, { w = miles.zeros(1000) })
    miles.save_safetensors(path, { v = miles.ones(2) })
    local t = miles.load_safetensors(path)
    assert.is_nil(t.w)
    assert.same({ 1, 1 }, t.v:totable())
    assert.same({ "t.safetensors" }, list_dir(dir))
    miles.write_file_atomic(dir .. "/j.json", "{}\n")
    assert.equals("{}\n", read_file(dir .. "/j.json"))
  end)
end)

describe("checkpoint JSON", function()
  it("keeps integers, floats, strings and nesting", function()
    local v = { a = 1, b = 1.0, c = 1e-8, d = "x\"\n\1é", e = { 1, 2.5, false, { k = "v" } },
                f = {}, big = 1 << 53, neg = -3, inf = math.huge }
    local back = checkpoint.json_decode(checkpoint.json_encode(v))
    assert.equals("integer", math.type(back.a))
    assert.equals("float", math.type(back.b))
    assert.equals(1e-8, back.c)
    assert.equals(v.d, back.d)
    assert.same(v.e, back.e)
    assert.same({}, back.f)
    assert.equals(1 << 53, back.big)
    assert.equals(-3, back.neg)
    assert.equals(math.huge, back.inf)
    assert.equals("\u{1F600}", checkpoint.json_decode('"\\ud83d\\ude00"'))
    assert.has_error(function() checkpoint.json_encode({ f = print }) end)
    assert.has_error(function() checkpoint.json_decode('{"a": 1,}') end)
  end)
end)

describe("miles.checkpoint", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rmdir(dir) end)

  -- A small model with a BatchNorm (buffers) and a fixed seed.
  local function small_net(seed)
    miles.manual_seed(seed or 0)
    return nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
  end

  it("saves the model under model.<name> with a JSON sidecar and loads it back", function()
    local path = dir .. "/ck.safetensors"
    local a = small_net(1)
    a(miles.randn(8, 6)) -- moves the running statistics
    local id = checkpoint.save(path, { model = a, meta = { epoch = 3, acc = 0.75, tag = "x" } })
    local t, md = miles.load_safetensors(path)
    assert.is_not_nil(t["model.0.weight"])
    assert.equals("int64", t["model.1.num_batches_tracked"]:dtype())
    local sidecar = checkpoint.json_decode(read_file(path .. ".json"))
    assert.equals(id, sidecar.id)
    assert.equals(id, checkpoint.json_decode(md["miles.checkpoint"]).id)
    assert.same({ epoch = 3, acc = 0.75, tag = "x" }, sidecar.meta)
    local b = small_net(2)
    local w = b[1].weight
    local meta = checkpoint.load(path, { model = b })
    assert.same({ epoch = 3, acc = 0.75, tag = "x" }, meta)
    assert.is_true(rawequal(w, b[1].weight), "loaded in place")
    for name, v in pairs(a:state_dict()) do H.assert_close(b:state_dict()[name], v, 0, 0, name) end
    assert.same({ "ck.safetensors", "ck.safetensors.json" }, list_dir(dir))
  end)

  it("names the first mismatched tensor when the model differs", function()
    local resnet = require "miles.models.resnet"
    local path = dir .. "/r10.safetensors"
    local opts = { in_channels = 1, widths = { 4, 8, 8, 8 } }
    checkpoint.save(path, { model = resnet.resnet10(opts) })
    local err = H.error_of(checkpoint.load, path, { model = resnet.resnet18(opts) })
    assert.truthy(err:find(path, 1, true), err)
    assert.truthy(err:find("missing key layer1.1.conv1.weight", 1, true), err)
    err = H.error_of(checkpoint.load, path,
      { model = resnet.resnet10({ in_channels = 1, widths = { 8, 8, 8, 8 } }) })
    assert.truthy(err:find("conv1.weight has shape [4,1,7,7] in the checkpoint but [8,1,7,7] "
      .. "in the model", 1, true), err)
    local res18 = resnet.resnet18(opts)
    checkpoint.load(path, { model = res18, strict = false }) -- what matches is loaded
  end)

  it("loads a plain PyTorch state_dict file into a model", function()
    local resnet = require "miles.models.resnet"
    local m = resnet.resnet10({ in_channels = 1, widths = { 8, 16, 32, 64 }, num_classes = 10 })
    local meta = checkpoint.load(H.fixtures .. "resnet/resnet10_w8.safetensors", { model = m })
    assert.same({}, meta)
    assert.equals(7, m.bn1.num_batches_tracked:item())
  end)

  it("says when a checkpoint holds no optimizer state", function()
    local path = dir .. "/ck.safetensors"
    local m = small_net()
    checkpoint.save(path, { model = m })
    local fake_opt = { load_state_dict = function() end }
    local err = H.error_of(checkpoint.load, path, { model = m, optimizer = fake_opt })
    assert.truthy(err:find("holds no optimizer state", 1, true), err)
  end)

  ;(has_optim and it or pending)("restores the optimizer so training resumes exactly", function()
    local path = dir .. "/ck.safetensors"
    local x, y = miles.randn(16, 6), miles.randint(1, 4, { 16 })
    local function steps(m, opt, n)
      for _ = 1, n do
        opt:zero_grad()
        miles.F.cross_entropy(m(x), y):backward()
        opt:step()
      end
    end
    local a = small_net(1)
    local opt_a = optim.Adam(a:parameters(), { lr = 0.01 })
    steps(a, opt_a, 3)
    checkpoint.save(path, { model = a, optimizer = opt_a, meta = { epoch = 3 } })
    local t = miles.load_safetensors(path)
    assert.is_not_nil(t["optim.1.exp_avg"])
    assert.is_not_nil(t["optim.1.exp_avg_sq"])
    steps(a, opt_a, 2)

    local b = small_net(9)
    local opt_b = optim.Adam(b:parameters(), { lr = 0.5 })
    checkpoint.load(path, { model = b, optimizer = opt_b })
    assert.equals(0.01, opt_b.groups[1].lr)
    assert.equals(3, opt_b.state[b[1].weight].step)
    steps(b, opt_b, 2)
    for name, v in pairs(a:state_dict()) do
      H.assert_close(b:state_dict()[name], v, 1e-6, 1e-7, name)
    end
  end)

  -- The miles executable running these specs (a child process saves in a loop).
  local function miles_bin()
    for _, c in ipairs({ os.getenv("MILES_BIN") or false, arg and arg[-1] or false }) do
      if c and c:match("miles$") and io.open(c, "rb") then return c end
    end
    return "build/bin/miles"
  end

  -- Is the process gone (or a zombie that nobody reaps)?
  local function is_dead(pid)
    local f = io.open("/proc/" .. pid .. "/stat")
    if not f then return true end
    local stat = f:read("a") or ""
    f:close()
    return stat:match("^%d+ %b() (%a)") == "Z"
  end

  it("leaves the old or the new checkpoint, never a corrupt one, when killed mid-save",
    function()
      local path = dir .. "/ck.safetensors"
      local script = dir .. "/saver.lua"
      write_file(script, [[
        local miles = require "miles"
        local checkpoint = require "miles.checkpoint"
        local m = miles.nn.Linear(2048, 1024)          -- 8 MB of weights
        for k = tonumber(arg[2]) + 1, 1000000 do
          miles.no_grad(function() m.weight:fill_(k); m.bias:fill_(k) end)
          checkpoint.save(arg[1], { model = m, meta = { k = k } })
        end
      ]])
      local m = nn.Linear(2048, 1024)
      miles.no_grad(function() m.weight:fill_(0); m.bias:fill_(0) end)
      checkpoint.save(path, { model = m, meta = { k = 0 } })
      -- Kill a child that saves in a loop, round after round, until a kill has
      -- landed in the middle of a save (at most 10 rounds: a loaded machine may
      -- need more than a few to catch one).
      local function partial_saves()
        local n = 0
        for _, name in ipairs(list_dir(dir)) do
          if name:find("%.tmp%.") then n = n + 1 end
        end
        return n
      end
      local last = 0
      for round = 1, 10 do
        local delay = 0.5 + 0.3 * round
        local p = io.popen(("'%s' '%s' '%s' %d >/dev/null 2>&1 & echo $!"):format(miles_bin(),
          script, path, last))
        local pid = p:read("l")
        p:close()
        assert.truthy(pid and pid:match("^%d+$"), "child pid")
        os.execute("sleep " .. delay)
        os.execute("kill -9 " .. pid .. " 2>/dev/null")
        for _ = 1, 100 do
          if is_dead(pid) then break end
          os.execute("sleep 0.05")
        end
        local fresh = nn.Linear(2048, 1024)
        local meta = checkpoint.load(path, { model = fresh })
        local k = meta.k
        assert.equals(k, fresh.weight:min():item(), "round " .. round .. ": weights of save " .. k)
        assert.equals(k, fresh.weight:max():item(), "round " .. round)
        assert.equals(k, fresh.bias:min():item(), "round " .. round)
        assert.is_true(k >= last, "checkpoints only move forward")
        last = k
        checkpoint.json_decode(read_file(path .. ".json")) -- the sidecar is whole too
        if last > 0 and partial_saves() >= 1 and round >= 3 then break end
      end
      assert.is_true(last > 0, "the child saved at least once (else the test proves nothing)")
      -- A kill in the middle of a save leaves its temporary file: evidence that
      -- at least one kill landed mid-write (saving is nearly all the loop's time).
      assert.is_true(partial_saves() >= 1, "no kill landed in the middle of a save")
    end)
end)
