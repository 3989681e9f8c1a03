-- miles.load / miles.save / miles.load_mmap: NPY files.
-- Fixtures in spec/fixtures/npy/ were written by NumPy (spec/fixtures/make_npy_fixtures.py);
-- the malformed files are built here byte by byte.
local miles = miles or require("miles")
local H = require "helpers"

local FIX = "spec/fixtures/npy/"

-- Temporary directories and whole-file reads and writes (spec/helpers.lua).
local tmpdir, rmdir, write_file, read_file = H.tmpdir, H.rmdir, H.write_file, H.read_file

-- An NPY version 1.0 file: the header dict padded to 64 bytes, then the data bytes.
local function npy_bytes(dict, data)
  local total = (10 + #dict + 1 + 63) // 64 * 64
  local hlen = total - 10
  return "\147NUMPY\1\0" .. string.pack("<I2", hlen) .. dict
    .. string.rep(" ", hlen - #dict - 1) .. "\n" .. (data or "")
end

local function dict(descr, shape)
  return ("{'descr': '%s', 'fortran_order': False, 'shape': %s, }"):format(descr, shape)
end

-- Nested tables (or a number, for a 0-d tensor) as a flat list; booleans as 0/1.
local function flatten(x, out)
  out = out or {}
  if type(x) == "table" then
    for _, v in ipairs(x) do flatten(v, out) end
  elseif type(x) == "boolean" then
    out[#out + 1] = x and 1 or 0
  else
    out[#out + 1] = x
  end
  return out
end

-- Assert that fn raises an error whose message contains every given word.
local function expect_error(fn, ...)
  assert.has_error(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  err = tostring(err)
  for _, word in ipairs({ ... }) do
    assert(err:find(word, 1, true), ("error %q does not mention %q"):format(err, word))
  end
end

local function same(t, dtype, shape, values)
  assert.are.equal(dtype, t:dtype())
  assert.are.same(shape, t:shape())
  if values then assert.are.same(values, flatten(t:totable())) end
end

describe("npy", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rmdir(dir) end)

  for _, loader in ipairs({ "load", "load_mmap" }) do
    describe(loader .. " of files written by numpy", function()
      local load = miles[loader]

      it("reads float32 2x3", function()
        same(load(FIX .. "f32_2x3.npy"), "float32", { 2, 3 }, { -1, -0.5, 0, 0.5, 1, 1.5 })
      end)
      it("reads float64", function()
        same(load(FIX .. "f64.npy"), "float64", { 2, 2 }, { 1.5, -2.25, 0.125, 1e10 })
      end)
      it("reads int64", function()
        same(load(FIX .. "i64.npy"), "int64", { 4 }, { -3, 0, 7, 2 ^ 40 })
      end)
      it("reads uint8", function()
        same(load(FIX .. "u8.npy"), "uint8", { 4 }, { 0, 1, 127, 255 })
      end)
      it("reads bool", function()
        same(load(FIX .. "bool.npy"), "bool", { 3 }, { 1, 0, 1 })
      end)
      it("reads a 0-d array", function()
        local t = load(FIX .. "scalar.npy")
        same(t, "float64", {}, { 3.5 })
        assert.are.equal(1, t:numel())
      end)
      it("reads an empty (0,3) array", function()
        local t = load(FIX .. "empty.npy")
        same(t, "float32", { 0, 3 })
        assert.are.equal(0, t:numel())
      end)
      it("reads versions 2.0 and 3.0", function()
        same(load(FIX .. "v2.npy"), "float32", { 3 }, { 1, 2, 3 })
        same(load(FIX .. "v3.npy"), "int64", { 1, 2 }, { 4, 5 })
      end)
      it("converts big-endian '>f4' to float32", function()
        same(load(FIX .. "be_f4.npy"), "float32", { 3 }, { 1, -2.5, 3.25 })
      end)
      it("widens '<i4' to int64", function()
        same(load(FIX .. "i4.npy"), "int64", { 4 }, { -1, 2, -2147483648, 2147483647 })
      end)
      it("rejects Fortran order", function()
        local p = FIX .. "fortran.npy"
        expect_error(function() load(p) end, p, "Fortran-order", "np.ascontiguousarray")
      end)
      it("rejects float16", function()
        local p = FIX .. "f16.npy"
        expect_error(function() load(p) end, p, "float16")
      end)
      it("names a missing file", function()
        local p = dir .. "/missing.npy"
        expect_error(function() load(p) end, p, "No such file")
      end)
    end)
  end

  describe("round trip", function()
    local cases = {
      { "float32", "<f4", "f", { 1.5, -2, 0.25, 1e3, -7, 3 } },
      { "float64", "<f8", "d", { 1.5, -2, 0.25, 1e300, -7, 3 } },
      { "int64", "<i8", "i8", { 1, -2, 3, 2 ^ 50, -7, 0 } },
      { "uint8", "|u1", "B", { 1, 2, 3, 255, 7, 0 } },
      { "bool", "|b1", "B", { 1, 0, 0, 1, 1, 0 } },
    }
    -- shapes with the values they take from the case's list
    local shapes = {
      { "()", {}, 1 },
      { "(0, 3)", { 0, 3 }, 0 },
      { "(2, 3)", { 2, 3 }, 6 },
      { "(1, 2, 1, 1, 1, 3, 1, 1)", { 1, 2, 1, 1, 1, 3, 1, 1 }, 6 },
    }
    for _, c in ipairs(cases) do
      local name, descr, fmt, vals = c[1], c[2], c[3], c[4]
      for _, s in ipairs(shapes) do
        it(("keeps %s of shape %s"):format(name, s[1]), function()
          local want, data = {}, {}
          for i = 1, s[3] do
            want[i] = vals[i]
            data[i] = string.pack("<" .. fmt, fmt == "i8" and math.tointeger(vals[i]) or vals[i])
          end
          local src, out = dir .. "/src.npy", dir .. "/out.npy"
          write_file(src, npy_bytes(dict(descr, s[1]), table.concat(data)))
          miles.save(out, miles.load(src))
          for _, loader in ipairs({ "load", "load_mmap" }) do
            local t = miles[loader](out)
            same(t, name, s[2], want)
            assert.are.equal(s[3], t:numel())
          end
        end)
      end
      it(("saves a %s tensor made by miles.tensor"):format(name), function()
        local rows = { { vals[1], vals[2], vals[3] }, { vals[4], vals[5], vals[6] } }
        local p = dir .. "/t.npy"
        miles.save(p, miles.tensor(rows, { dtype = name }))
        same(miles.load(p), name, { 2, 3 }, vals)
      end)
    end

    it("writes the header numpy writes", function()
      local p = dir .. "/h.npy"
      miles.save(p, miles.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, { dtype = "float32" }))
      local bytes = read_file(p)
      assert.are.equal(128 + 24, #bytes)
      assert.are.equal(npy_bytes(dict("<f4", "(2, 3)")), bytes:sub(1, 128))
    end)

    it("saves a non-contiguous (transposed) tensor in its logical order", function()
      local p = dir .. "/tr.npy"
      miles.save(p, miles.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, { dtype = "float64" }):t())
      same(miles.load(p), "float64", { 3, 2 }, { 1, 4, 2, 5, 3, 6 })
    end)

    it("maps copy-on-write: writing to a mapped tensor leaves the file alone", function()
      local p = dir .. "/cow.npy"
      miles.save(p, miles.tensor({ 1, 2, 3 }, { dtype = "float32" }))
      local t = miles.load_mmap(p)
      t:fill_(7)
      same(t, "float32", { 3 }, { 7, 7, 7 })
      same(miles.load(p), "float32", { 3 }, { 1, 2, 3 })
    end)

    it("keeps an 8-d tensor", function()
      local p = dir .. "/8d.npy"
      local t = miles.tensor({ { { { { { { { 1, 2 } } } } } } } }, { dtype = "float64" })
      miles.save(p, t)
      same(miles.load(p), "float64", { 1, 1, 1, 1, 1, 1, 1, 2 }, { 1, 2 })
    end)
  end)

  describe("save", function()
    it("replaces an existing file whole and leaves no temporary file", function()
      local p = dir .. "/a.npy"
      write_file(p, string.rep("old contents ", 1000))
      miles.save(p, miles.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = "float64" }))
      same(miles.load(p), "float64", { 2, 2 }, { 1, 2, 3, 4 })
      assert.are.equal(128 + 32, #read_file(p))
      local ls = io.popen("ls -a '" .. dir .. "'")
      local names = ls:read("a")
      ls:close()
      assert.is_nil(names:find(".tmp.", 1, true))
    end)

    it("names the file when its directory does not exist", function()
      local p = dir .. "/no/such/dir/x.npy"
      local t = miles.tensor({ 1, 2 }, { dtype = "float32" })
      expect_error(function() miles.save(p, t) end, p, "No such file")
    end)

    it("checks its arguments", function()
      assert.has_error(function() miles.save(dir .. "/x.npy", 42) end)
      assert.has_error(function() miles.save(nil, miles.tensor({ 1 })) end)
      assert.has_error(function() miles.load() end)
      assert.has_error(function() miles.load_mmap({}) end)
    end)
  end)

  describe("malformed files", function()
    local good = dict("<f4", "(3,)")
    local cases = {
      { "bad magic", "PK\3\4 this is a zip file, not npy", "bad magic" },
      { "an empty file", "", "bad magic" },
      { "a truncated prelude", "\147NUMPY\1", "truncated" },
      { "a truncated header", npy_bytes(good):sub(1, 40), "truncated header" },
      { "an unsupported version", "\147NUMPY\9\0" .. npy_bytes(good):sub(9), "version" },
      { "truncated data", npy_bytes(dict("<f4", "(300,)"), string.rep("\0", 300)),
        "truncated: header declares 1200 bytes of data, file has 300" },
      { "a garbage dict", npy_bytes("{'descr' <f4 fortran_order: (3,)"), "malformed header" },
      { "a dict that is not a dict", npy_bytes("not a dict at all"), "malformed header" },
      { "a missing key", npy_bytes("{'descr': '<f4', 'shape': (3,), }", string.rep("\0", 12)),
        "missing key 'fortran_order'" },
      { "a huge shape", npy_bytes(dict("<f8", "(100000, 100000, 100000)")), "truncated" },
      { "an overflowing shape",
        npy_bytes(dict("<f8", "(4294967296, 4294967296, 4294967296)")), "overflows" },
      { "a negative shape", npy_bytes(dict("<f4", "(2, -3)")), "negative" },
      { "too many dims", npy_bytes(dict("<f4", "(1, 1, 1, 1, 1, 1, 1, 1, 1)"), "\0\0\0\0"), "dims" },
      { "a wrong descr", npy_bytes(dict("<c8", "(3,)"), string.rep("\0", 24)), "unsupported dtype" },
      { "a structured descr",
        npy_bytes("{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (3,), }"),
        "structured" },
    }
    for _, c in ipairs(cases) do
      it("rejects " .. c[1], function()
        local p = dir .. "/bad.npy"
        write_file(p, c[2])
        expect_error(function() miles.load(p) end, p, c[3])
        expect_error(function() miles.load_mmap(p) end, p, c[3])
      end)
    end

    it("ignores bytes after the data, as numpy does", function()
      local p = dir .. "/trailing.npy"
      write_file(p, npy_bytes(good, string.pack("<fff", 1, 2, 3) .. "trailing junk"))
      same(miles.load(p), "float32", { 3 }, { 1, 2, 3 })
    end)
  end)
end)
