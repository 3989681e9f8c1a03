-- miles.io readers and writers: IDX, CIFAR, PNG, JPEG, audio (libsndfile) and WAV.
-- Fixtures in spec/fixtures/io/ were made by other tools (spec/fixtures/make_io_fixtures.py:
-- PNG assembled from zlib, IDX from struct/gzip, WAV with Python's wave, AIFF with aifc,
-- JPEG with cjpeg/djpeg, CMYK JPEG with PIL); every .npy next to a file holds the values
-- expected from it. The malformed files are built here byte by byte; each must raise a
-- Lua error whose message names the file.
local miles = miles or require("miles")
local H = require("helpers")

local FIX = "spec/fixtures/io/"
local mio = miles.io

-- --- helpers ---------------------------------------------------------------

local tmpdir, rmdir, write_file, read_file, exists = H.tmpdir, H.rmdir, H.write_file, H.read_file, H.exists

local listdir, expect_error = H.entries, H.raises

local function shape_of(t) return table.concat(t:shape(), "x") end

-- Exact equality of values and shape (any dtypes).
local function assert_equal(got, want, what)
  assert.are.equal(shape_of(want), shape_of(got), (what or "") .. " shape")
  local d = H.max_abs_diff(got, want)
  assert(d == 0, ("%s: values differ (max |diff| %g)"):format(what or "value", d))
end

local function fixture(name) return miles.load(FIX .. name .. ".npy") end

-- CRC-32 (as in PNG and zlib), so the spec can build valid chunks with hostile contents.
local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    c = (c & 1 == 1) and (0xEDB88320 ~ (c >> 1)) or (c >> 1)
  end
  crc_table[i] = c
end
local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = crc_table[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end

local PNG_SIG = "\137PNG\r\n\26\n"
local function png_chunk(tag, data)
  return string.pack(">I4", #data) .. tag .. data .. string.pack(">I4", crc32(tag .. data))
end
local function ihdr(w, h, depth, ctype)
  return png_chunk("IHDR", string.pack(">I4I4BBBBB", w, h, depth, ctype, 0, 0, 0))
end

-- A RIFF WAV header for 16-bit PCM declaring data_len bytes (the data follows).
local function wav_header(channels, rate, data_len, riff_len)
  local fmt = string.pack("<I2I2I4I4I2I2", 1, channels, rate, rate * channels * 2, channels * 2, 16)
  return "RIFF" .. string.pack("<I4", riff_len or (4 + 8 + #fmt + 8 + data_len)) .. "WAVE"
    .. "fmt " .. string.pack("<I4", #fmt) .. fmt .. "data" .. string.pack("<I4", data_len)
end

-- A float64 sine of n samples at rate.
local function sine(freq, rate, n, amp)
  local t = {}
  for i = 1, n do t[i] = (amp or 1) * math.sin(2 * math.pi * freq * (i - 1) / rate) end
  return miles.tensor(t, { dtype = "float64" })
end

-- Amplitude and RMS residual of x (a float tensor at rate) fitted by a*sin + b*cos at
-- freq over samples [first, last]: the residual is small only if the frequency is right.
local function fit_tone(x, rate, freq, first, last)
  local v = x:to("float64"):totable()
  local ss, sc, cc, ys, yc = 0, 0, 0, 0, 0
  for i = first, last do
    local w = 2 * math.pi * freq * (i - 1) / rate
    local s, c = math.sin(w), math.cos(w)
    ss, sc, cc, ys, yc = ss + s * s, sc + s * c, cc + c * c, ys + v[i] * s, yc + v[i] * c
  end
  local det = ss * cc - sc * sc
  local a, b = (ys * cc - yc * sc) / det, (yc * ss - ys * sc) / det
  local res = 0
  for i = first, last do
    local w = 2 * math.pi * freq * (i - 1) / rate
    res = res + (v[i] - a * math.sin(w) - b * math.cos(w)) ^ 2
  end
  return math.sqrt(a * a + b * b), math.sqrt(res / (last - first + 1))
end

-- Zero crossings (sign changes) of x over [first, last].
local function zero_crossings(x, first, last)
  local v, n = x:to("float64"):totable(), 0
  for i = first + 1, last do
    if (v[i - 1] < 0) ~= (v[i] < 0) then n = n + 1 end
  end
  return n
end

-- --- IDX -----------------------------------------------------------------------

describe("miles.io.read_idx", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rmdir(dir) end)

  local cases = {
    { "u8.idx", "uint8", { 2, 3, 4 } },
    { "i8.idx", "int64", { 5 } },
    { "i16.idx", "int64", { 2, 3 } },
    { "i32.idx", "int64", { 4 } },
    { "f32.idx", "float32", { 2, 2 } },
    { "f64.idx", "float64", { 3 } },
  }
  for _, c in ipairs(cases) do
    it(("reads %s as %s %s"):format(c[1], c[2], table.concat(c[3], "x")), function()
      local t = mio.read_idx(FIX .. c[1])
      assert.are.equal(c[2], t:dtype())
      assert.are.same(c[3], t:shape())
      assert_equal(t, fixture(c[1]), c[1])
    end)
  end

  it("reads gzip files, including concatenated gzip members", function()
    local want = fixture("u8.idx")
    assert_equal(mio.read_idx(FIX .. "u8.idx.gz"), want, "gz")
    assert_equal(mio.read_idx(FIX .. "u8_two_members.idx.gz"), want, "two members")
  end)

  local fm = "/usr/share/datasets/fashion-mnist/"
  local have_fm = exists(fm .. "t10k-labels-idx1-ubyte.gz")
  ;(have_fm and it or pending)("reads the Fashion-MNIST files of dataset-fashion-mnist", function()
    local images = mio.read_idx(fm .. "train-images-idx3-ubyte.gz")
    assert.are.same({ 60000, 28, 28 }, images:shape())
    assert.are.equal("uint8", images:dtype())
    local labels = mio.read_idx(fm .. "train-labels-idx1-ubyte.gz")
    assert.are.same({ 60000 }, labels:shape())
    for k = 0, 9 do -- Fashion-MNIST is balanced: 6000 training images per class
      assert.are.equal(6000, labels:eq(k):to("int64"):sum():item())
    end
    assert.are.same({ 10000, 28, 28 }, mio.read_idx(fm .. "t10k-images-idx3-ubyte.gz"):shape())
    local test = mio.read_idx(fm .. "t10k-labels-idx1-ubyte.gz")
    assert.are.same({ 9, 2, 1 }, { test[1]:item(), test[2]:item(), test[3]:item() })
    local mean = images:to("float64"):mean():item()
    assert(mean > 60 and mean < 90, "mean pixel " .. mean) -- 72.94 for Fashion-MNIST
  end)

  describe("rejects", function()
    local function head(code, dims)
      local s = string.char(0, 0, code, #dims)
      for _, d in ipairs(dims) do s = s .. string.pack(">I4", d) end
      return s
    end
    local bad = {
      { "an empty file", "", "not an IDX file" },
      { "a bad magic", "\1\2\8\1" .. string.pack(">I4", 1) .. "x", "bad magic" },
      { "an unknown type", head(0x0A, { 1 }) .. "x", "unknown IDX data type 0x0A" },
      { "0 dims", head(0x08, {}), "0 dims" },
      { "a zero dim", head(0x08, { 3, 0 }), "dim 2 is 0" },
      { "more than 8 dims", string.char(0, 0, 8, 9) .. string.rep(string.pack(">I4", 1), 9) .. "x",
        "9 dims" },
      { "a truncated header", string.char(0, 0, 8, 3) .. string.pack(">I4", 2), "truncated" },
      { "truncated data", head(0x08, { 2, 5 }) .. string.rep("x", 9), "truncated" },
      { "truncated int32 data", head(0x0C, { 3 }) .. string.rep("x", 11), "truncated" },
      { "extra bytes", head(0x08, { 2 }) .. "abc", "1 unexpected bytes" },
      { "a huge declared size", head(0x0E, { 65535, 65535, 65535 }) .. "x", "too large" },
      { "a size over the file", head(0x08, { 100000, 1000 }) .. "x", "truncated" },
    }
    for _, b in ipairs(bad) do
      it(b[1], function()
        local p = dir .. "/bad.idx"
        write_file(p, b[2])
        expect_error(function() mio.read_idx(p) end, "read_idx", p, b[3])
      end)
    end

    it("truncated, corrupt and hostile gzip files", function()
      local gz = read_file(FIX .. "u8.idx.gz")
      local p = dir .. "/bad.idx.gz"
      for _, cut in ipairs({ 2, 10, 20, #gz - 8, #gz - 1 }) do
        write_file(p, gz:sub(1, cut))
        expect_error(function() mio.read_idx(p) end, p)
      end
      write_file(p, gz:sub(1, 10) .. "\7" .. gz:sub(12)) -- a deflate block of reserved type 3
      expect_error(function() mio.read_idx(p) end, p, "corrupt gzip data", "invalid block type")
      write_file(p, gz .. "garbage!")
      expect_error(function() mio.read_idx(p) end, p, "corrupt gzip data")
      -- A stored (uncompressed) gzip member declaring 2 GiB - 1 of uint8 in 40 bytes.
      local body = head(0x08, { 0x7FFFFFFF })
      local deflate = "\1" .. string.pack("<I2I2", #body, ~#body & 0xFFFF) .. body
      write_file(p, "\31\139\8\0\0\0\0\0\0\255" .. deflate .. string.pack("<I4I4", crc32(body), #body))
      expect_error(function() mio.read_idx(p) end, p, "more than a")
    end)

    it("a missing file, a directory", function()
      expect_error(function() mio.read_idx(dir .. "/nope.idx") end, dir .. "/nope.idx", "No such file")
      expect_error(function() mio.read_idx(dir) end, dir, "is a directory")
    end)
  end)
end)

-- --- CIFAR -------------------------------------------------------------------------

describe("miles.io.read_cifar", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rmdir(dir) end)

  it("reads a CIFAR-10 batch: uint8 images [N,3,32,32], labels 1..10", function()
    local images, labels, extra = mio.read_cifar(FIX .. "cifar10.bin", { variant = 10 })
    assert.are.equal("uint8", images:dtype())
    assert.are.equal("int64", labels:dtype())
    assert_equal(images, fixture("cifar10.bin.images"), "images")
    assert_equal(labels, fixture("cifar10.bin.labels"), "labels")
    assert.are.same({ 1, 10, 5 }, labels:totable())
    assert.is_nil(extra)
    local again = mio.read_cifar(FIX .. "cifar10.bin") -- variant 10 is the default
    assert_equal(again, images, "default variant")
  end)

  it("reads a CIFAR-100 batch: images, fine labels 1..100, coarse labels 1..20", function()
    local images, fine, coarse = mio.read_cifar(FIX .. "cifar100.bin", { variant = 100 })
    assert_equal(images, fixture("cifar100.bin.images"), "images")
    assert.are.same({ 100, 6 }, fine:totable())
    assert.are.same({ 1, 20 }, coarse:totable())
    assert_equal(fine, fixture("cifar100.bin.fine"), "fine")
    assert_equal(coarse, fixture("cifar100.bin.coarse"), "coarse")
  end)

  describe("rejects", function()
    local rec10 = "\3" .. string.rep("\7", 3072)
    local bad = {
      { "an empty file", "", 10, "empty file" },
      { "a truncated record", rec10 .. rec10:sub(1, 100), 10, "not a multiple" },
      { "a CIFAR-10 label over 9", rec10 .. "\10" .. string.rep("\0", 3072), 10, "record 2: label 10" },
      { "a CIFAR-100 file read as CIFAR-10", string.rep("\0", 3074 * 3), 10, "not a multiple" },
      { "a CIFAR-100 fine label over 99", "\1\100" .. string.rep("\0", 3072), 100, "fine 100" },
      { "a CIFAR-100 coarse label over 19", "\20\1" .. string.rep("\0", 3072), 100, "coarse 20" },
    }
    for _, b in ipairs(bad) do
      it(b[1], function()
        local p = dir .. "/bad.bin"
        write_file(p, b[2])
        expect_error(function() mio.read_cifar(p, { variant = b[3] }) end, "read_cifar", p, b[4])
      end)
    end
    it("bad options", function()
      local p = FIX .. "cifar10.bin"
      expect_error(function() mio.read_cifar(p, { variant = 20 }) end, "variant", "10 or 100")
      expect_error(function() mio.read_cifar(p, { varaint = 10 }) end, "unknown option 'varaint'")
    end)
  end)
end)

-- --- PNG ---------------------------------------------------------------------------

describe("miles.io.read_png", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rmdir(dir) end)

  local cases = {
    { "gray8.png", { 1, 5, 7 }, "8-bit gray" },
    { "ga8.png", { 2, 4, 5 }, "8-bit gray+alpha" },
    { "rgb8.png", { 3, 6, 5 }, "8-bit RGB, every filter type, IDAT in 3 chunks, a tEXt chunk" },
    { "rgba8.png", { 4, 5, 4 }, "8-bit RGBA" },
    { "gray16.png", { 1, 4, 6 }, "16-bit gray scaled to 8 bits with rounding" },
    { "rgb16.png", { 3, 3, 4 }, "16-bit RGB scaled to 8 bits with rounding" },
    { "palette8.png", { 3, 5, 6 }, "an 8-bit palette expanded to RGB" },
    { "palette4_trns.png", { 4, 3, 5 }, "a 4-bit palette with tRNS expanded to RGBA" },
    { "gray1.png", { 1, 3, 9 }, "1-bit gray scaled to 0/255" },
    { "gray2.png", { 1, 4, 3 }, "2-bit gray scaled to 0..255" },
    { "gray_trns.png", { 2, 3, 4 }, "gray with a tRNS key as gray+alpha" },
    { "rgb8_adam7.png", { 3, 9, 11 }, "Adam7-interlaced RGB" },
  }
  for _, c in ipairs(cases) do
    it("reads " .. c[3], function()
      local t = mio.read_png(FIX .. c[1])
      assert.are.equal("uint8", t:dtype())
      assert.are.same(c[2], t:shape())
      assert_equal(t, fixture(c[1]), c[1])
    end)
  end

  it("reads 16-bit images as float32 v/65535 with {dtype = 'float32'}", function()
    for _, name in ipairs({ "gray16.png", "rgb16.png" }) do
      local t = mio.read_png(FIX .. name, { dtype = "float32" })
      assert.are.equal("float32", t:dtype())
      H.assert_close(t, fixture(name .. ".raw"):to("float64") / 65535, 1e-6, 1e-7, name)
    end
  end)

  it("reads 8-bit images as float32 v/255 with {dtype = 'float32'}", function()
    local t = mio.read_png(FIX .. "rgba8.png", { dtype = "float32" })
    H.assert_close(t, fixture("rgba8.png"):to("float64") / 255, 1e-6, 1e-7)
  end)

  it("skips an ancillary chunk with a bad CRC, but not a critical one", function()
    local s = read_file(FIX .. "rgb8.png")
    local p = dir .. "/crc.png"
    local at = s:find("tEXt", 1, true)
    local len = string.unpack(">I4", s, at - 4)
    local crc_at = at + 4 + len
    write_file(p, s:sub(1, crc_at - 1) .. string.char(s:byte(crc_at) ~ 1) .. s:sub(crc_at + 1))
    assert_equal(mio.read_png(p), fixture("rgb8.png"), "bad tEXt CRC")
    at = s:find("IDAT", 1, true)
    len = string.unpack(">I4", s, at - 4)
    crc_at = at + 4 + len
    write_file(p, s:sub(1, crc_at - 1) .. string.char(s:byte(crc_at) ~ 1) .. s:sub(crc_at + 1))
    expect_error(function() mio.read_png(p) end, "read_png", p, "IDAT", "CRC")
  end)

  describe("rejects", function()
    it("a bad signature, an empty file, a missing file, a directory", function()
      local p = dir .. "/x.png"
      write_file(p, "GIF89a")
      expect_error(function() mio.read_png(p) end, p, "not a PNG file")
      write_file(p, "")
      expect_error(function() mio.read_png(p) end, p, "not a PNG file")
      expect_error(function() mio.read_png(dir .. "/no.png") end, dir .. "/no.png", "No such file")
      expect_error(function() mio.read_png(dir) end, dir, "is a directory")
    end)

    it("every truncation of a valid file", function()
      local s = read_file(FIX .. "rgb8_adam7.png")
      local p = dir .. "/cut.png"
      for cut = 8, #s - 1 do
        write_file(p, s:sub(1, cut))
        expect_error(function() mio.read_png(p) end, "read_png", p)
      end
    end)

    it("a huge image declared in a tiny file, before allocating", function()
      local p = dir .. "/huge.png"
      write_file(p, PNG_SIG .. ihdr(100000, 100000, 8, 6) .. png_chunk("IDAT", "x")
        .. png_chunk("IEND", ""))
      expect_error(function() mio.read_png(p) end, p, "100000x100000", "cannot fit")
    end)

    it("an ancillary chunk declaring 1.8 GB in a small file, without allocating for it", function()
      local p = dir .. "/text.png"
      local s = read_file(FIX .. "gray8.png")
      local body = s:sub(9 + 25) -- after the signature and IHDR
      write_file(p, s:sub(1, 8 + 25) .. string.pack(">I4", 0x6F750023) .. "tEXtComment\0" .. body)
      expect_error(function() mio.read_png(p) end, "read_png", p)
    end)

    it("an image over the 1 GiB cap", function()
      local p = dir .. "/big.png"
      write_file(p, PNG_SIG .. ihdr(40000, 40000, 1, 0) .. png_chunk("IDAT", string.rep("x", 200000))
        .. png_chunk("IEND", ""))
      expect_error(function() mio.read_png(p) end, p, "over the")
    end)

    it("a zero width, a bad bit depth, missing image data", function()
      local p = dir .. "/bad.png"
      write_file(p, PNG_SIG .. ihdr(0, 4, 8, 0) .. png_chunk("IEND", ""))
      expect_error(function() mio.read_png(p) end, p, "Invalid IHDR", "width is zero")
      write_file(p, PNG_SIG .. ihdr(4, 4, 3, 0) .. png_chunk("IEND", ""))
      expect_error(function() mio.read_png(p) end, p)
      write_file(p, PNG_SIG .. ihdr(4, 4, 8, 0) .. png_chunk("IEND", ""))
      expect_error(function() mio.read_png(p) end, p)
    end)

    it("bad options", function()
      expect_error(function() mio.read_png(FIX .. "gray8.png", { dtype = "int64" }) end,
        "read_png", "dtype")
      expect_error(function() mio.read_png(FIX .. "gray8.png", { dtpye = "uint8" }) end,
        "unknown option 'dtpye'")
    end)
  end)
end)

describe("miles.io.write_png", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rmdir(dir) end)

  local function random_u8(...)
    return miles.randint(0, 256, { ... }):to("uint8")
  end

  local modes = {
    { "gray [H,W]", { 7, 5 }, { 1, 7, 5 } },
    { "gray [1,H,W]", { 1, 6, 9 }, { 1, 6, 9 } },
    { "gray+alpha [2,H,W]", { 2, 4, 3 }, { 2, 4, 3 } },
    { "RGB [3,H,W]", { 3, 8, 6 }, { 3, 8, 6 } },
    { "RGBA [4,H,W]", { 4, 5, 7 }, { 4, 5, 7 } },
    { "a 1x1 RGB image", { 3, 1, 1 }, { 3, 1, 1 } },
    { "a 64x48 RGB image", { 3, 48, 64 }, { 3, 48, 64 } },
  }
  for _, m in ipairs(modes) do
    it("round-trips " .. m[1], function()
      local t = random_u8(table.unpack(m[2]))
      local p = dir .. "/rt.png"
      mio.write_png(p, t)
      local back = mio.read_png(p)
      assert.are.same(m[3], back:shape())
      assert_equal(back, t:reshape(m[3]), m[1])
    end)
  end

  it("writes a non-contiguous (permuted) tensor in its logical order", function()
    local hwc = random_u8(5, 6, 3)
    local chw = hwc:permute(3, 1, 2)
    assert.is_false(chw:is_contiguous())
    local p = dir .. "/perm.png"
    mio.write_png(p, chw)
    assert_equal(mio.read_png(p), chw, "permuted")
  end)

  it("writes what other readers read: the fixture's pixels give the same image back", function()
    local want = fixture("rgba8.png")
    local p = dir .. "/again.png"
    mio.write_png(p, want:to("uint8"))
    assert_equal(mio.read_png(p), want, "rewritten")
  end)

  it("replaces a file atomically and leaves no temporary file", function()
    local p = dir .. "/a.png"
    mio.write_png(p, random_u8(1, 2, 2))
    local second = random_u8(3, 4, 4)
    mio.write_png(p, second)
    assert_equal(mio.read_png(p), second, "replaced")
    assert.are.same({ "a.png" }, listdir(dir))
    -- A failed write leaves the old file alone.
    expect_error(function() mio.write_png(p, miles.zeros(3, 4, 4)) end, p, "uint8")
    assert_equal(mio.read_png(p), second, "kept")
    assert.are.same({ "a.png" }, listdir(dir))
  end)

  it("rejects what a PNG cannot hold, naming the file", function()
    local p = dir .. "/bad.png"
    expect_error(function() mio.write_png(p, miles.zeros(3, 4, 4)) end, "write_png", p, "float32")
    expect_error(function() mio.write_png(p, random_u8(5, 4, 4)) end, p, "C = 1, 2, 3 or 4")
    expect_error(function() mio.write_png(p, random_u8(16)) end, p, "[H,W] or [C,H,W]")
    expect_error(function() mio.write_png(p, miles.zeros(3, 0, 4, { dtype = "uint8" })) end, p)
    expect_error(function() mio.write_png(dir .. "/no/such/dir.png", random_u8(2, 2)) end,
      dir .. "/no/such/dir.png", "No such file")
    assert.are.same({}, listdir(dir))
  end)
end)

-- --- JPEG --------------------------------------------------------------------------

describe("miles.io.read_jpeg", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rmdir(dir) end)

  local cases = {
    { "gray.jpg", { 1, 12, 16 }, "a grayscale JPEG" },
    { "rgb.jpg", { 3, 16, 16 }, "a baseline YCbCr JPEG as RGB" },
    { "rgb_odd.jpg", { 3, 7, 13 }, "a 4:2:0 JPEG of odd size" },
    { "rgb_progressive.jpg", { 3, 10, 20 }, "a progressive JPEG" },
  }
  for _, c in ipairs(cases) do
    it("reads " .. c[3] .. " exactly as djpeg decodes it", function()
      local t = mio.read_jpeg(FIX .. c[1])
      assert.are.equal("uint8", t:dtype())
      assert.are.same(c[2], t:shape())
      assert_equal(t, fixture(c[1]), c[1])
    end)
  end

  ;(exists(FIX .. "cmyk.jpg") and it or pending)("converts an Adobe CMYK JPEG to RGB like PIL", function()
    local t = mio.read_jpeg(FIX .. "cmyk.jpg")
    assert.are.same({ 3, 8, 8 }, t:shape())
    local d = H.max_abs_diff(t, fixture("cmyk.jpg"))
    assert(d <= 1, "differs from PIL by " .. d)
  end)

  describe("rejects", function()
    it("a file that is not a JPEG, an empty one, a missing one", function()
      local p = dir .. "/x.jpg"
      write_file(p, read_file(FIX .. "gray8.png"))
      expect_error(function() mio.read_jpeg(p) end, "read_jpeg", p, "not a JPEG file")
      write_file(p, "")
      expect_error(function() mio.read_jpeg(p) end, p, "not a JPEG file")
      expect_error(function() mio.read_jpeg(dir .. "/no.jpg") end, dir .. "/no.jpg", "No such file")
    end)

    it("every truncation of a valid file (never a gray image)", function()
      for _, name in ipairs({ "rgb.jpg", "rgb_progressive.jpg" }) do
        local s = read_file(FIX .. name)
        local p = dir .. "/cut.jpg"
        for cut = 2, #s - 2 do
          write_file(p, s:sub(1, cut))
          expect_error(function() mio.read_jpeg(p) end, "read_jpeg", p)
        end
        write_file(p, s:sub(1, #s // 2))
        expect_error(function() mio.read_jpeg(p) end, p, "Premature end of JPEG file")
      end
    end)

    -- The fixture with its frame header's height and width replaced.
    local function resized(h, w)
      local s = read_file(FIX .. "rgb.jpg")
      local at = s:find("\255\192", 3, true) -- SOF0
      return s:sub(1, at + 4) .. string.pack(">I2I2", h, w) .. s:sub(at + 9)
    end

    it("an image over the 1 GiB cap, before decoding", function()
      local p = dir .. "/huge.jpg"
      write_file(p, resized(65000, 65000))
      expect_error(function() mio.read_jpeg(p) end, p, "65000x65000", "over the")
    end)

    it("large declared dimensions with no data for them", function()
      local p = dir .. "/big.jpg"
      write_file(p, resized(3000, 3000))
      expect_error(function() mio.read_jpeg(p) end, p)
    end)

    it("a zero height", function()
      local p = dir .. "/zero.jpg"
      write_file(p, resized(0, 16))
      expect_error(function() mio.read_jpeg(p) end, p)
    end)
  end)
end)

-- --- audio -------------------------------------------------------------------------

describe("miles.io.read_audio", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rmdir(dir) end)

  local cases = {
    { "pcm16_mono.wav", 22050, { 1, 300 }, "16-bit mono WAV" },
    { "pcm16_stereo.wav", 8000, { 2, 200 }, "16-bit stereo WAV" },
    { "u8.wav", 11025, { 1, 100 }, "8-bit unsigned WAV" },
    { "pcm24.wav", 48000, { 2, 120 }, "24-bit WAV" },
    { "pcm32.wav", 16000, { 1, 80 }, "32-bit integer WAV" },
    { "float32.wav", 44100, { 3, 150 }, "32-bit float 3-channel WAV" },
    { "pcm16_stereo.aiff", 16000, { 2, 64 }, "16-bit stereo AIFF" },
  }
  for _, c in ipairs(cases) do
    it("reads a " .. c[4] .. " as float32 [channels, frames]", function()
      local t, rate = mio.read_audio(FIX .. c[1])
      assert.are.equal("float32", t:dtype())
      assert.are.equal(c[2], rate)
      assert.are.same(c[3], t:shape())
      H.assert_close(t, fixture(c[1]), 0, 1e-7, c[1])
    end)
  end

  it("mixes down to mono: the mean of the channels", function()
    local t, rate = mio.read_audio(FIX .. "float32.wav", { mono = true })
    assert.are.same({ 150 }, t:shape())
    assert.are.equal(44100, rate)
    H.assert_close(t, fixture("float32.wav"):to("float64"):mean(1), 1e-6, 1e-7)
    local m = mio.read_audio(FIX .. "pcm16_mono.wav", { mono = true })
    H.assert_close(m, fixture("pcm16_mono.wav")[1], 0, 0)
  end)

  it("resamples a 440 Hz sine from 22050 to 16000 Hz: same frequency and amplitude", function()
    local t, rate = mio.read_audio(FIX .. "sine440_22050.wav", { mono = true, rate = 16000 })
    assert.are.equal(16000, rate)
    local n = math.ceil(5512 * 16000 / 22050)
    assert.are.same({ n }, t:shape())
    local amp, res = fit_tone(t, 16000, 440, 100, n - 100)
    assert(math.abs(amp - 0.5) < 1e-3, "amplitude " .. amp)
    assert(res < 1e-3, "residual " .. res)
    -- 440 Hz crosses zero 880 times a second.
    local zc = zero_crossings(t, 100, n - 100)
    local expected = 880 * (n - 200) / 16000
    assert(math.abs(zc - expected) <= 2, ("%d zero crossings, expected %.1f"):format(zc, expected))
  end)

  it("resamples every channel of [channels, frames]", function()
    local t, rate = mio.read_audio(FIX .. "pcm16_stereo.wav", { rate = 16000 })
    assert.are.equal(16000, rate)
    assert.are.same({ 2, 400 }, t:shape())
    local want = fixture("pcm16_stereo.wav")
    for c = 1, 2 do
      H.assert_close(t[c], mio.resample(want[c], 8000, 16000), 0, 1e-6, "channel " .. c)
    end
  end)

  it("reads a streamed WAV whose sizes are placeholders (espeak-ng --stdout)", function()
    local p = dir .. "/stream.wav"
    local data = string.pack("<i2i2i2i2", 1000, -1000, 16384, -16384)
    write_file(p, wav_header(1, 22050, 0x7FFFF000, 0x7FFFF024) .. data)
    local t, rate = mio.read_audio(p)
    assert.are.equal(22050, rate)
    H.assert_close(t, { { 1000 / 32768, -1000 / 32768, 0.5, -0.5 } }, 0, 1e-7)
  end)

  describe("rejects", function()
    it("a file that is not audio, an empty file, a missing file, a directory", function()
      local p = dir .. "/x.wav"
      write_file(p, "this is not audio at all, just some text that goes on")
      expect_error(function() mio.read_audio(p) end, "read_audio", p)
      write_file(p, "")
      expect_error(function() mio.read_audio(p) end, p)
      expect_error(function() mio.read_audio(dir .. "/no.wav") end, dir .. "/no.wav", "No such file")
      expect_error(function() mio.read_audio(dir) end, dir, "is a directory")
    end)

    it("a truncated WAV (data shorter than its chunk declares)", function()
      local p = dir .. "/cut.wav"
      write_file(p, wav_header(1, 8000, 2000) .. string.rep("\1\2", 500))
      expect_error(function() mio.read_audio(p) end, p, "truncated", "2000", "1000")
      local s = read_file(FIX .. "pcm16_stereo.wav")
      write_file(p, s:sub(1, #s - 100))
      expect_error(function() mio.read_audio(p) end, p, "truncated")
    end)

    it("a WAV with no frames, and a header only", function()
      local p = dir .. "/empty.wav"
      write_file(p, wav_header(1, 8000, 0))
      expect_error(function() mio.read_audio(p) end, p, "no audio frames")
      write_file(p, wav_header(1, 8000, 0):sub(1, 30))
      expect_error(function() mio.read_audio(p) end, p)
    end)

    it("bad options", function()
      local p = FIX .. "u8.wav"
      expect_error(function() mio.read_audio(p, { rate = 0 }) end, "read_audio", "rate")
      expect_error(function() mio.read_audio(p, { rate = 1.5 }) end, "rate", "integer")
      expect_error(function() mio.read_audio(p, { mnoo = true }) end, "unknown option 'mnoo'")
    end)
  end)
end)

describe("miles.io.resample", function()
  it("removes a tone above the new Nyquist frequency instead of aliasing it", function()
    local y = mio.resample(sine(10000, 44100, 4410), 44100, 16000)
    assert.are.same({ 1600 }, y:shape())
    local mid = y:narrow(1, 100, 1400)
    local rms = math.sqrt((mid:to("float64") ^ 2):mean():item())
    assert(rms < 1e-3, "rms " .. rms) -- -60 dB at least (about -90 dB measured)
  end)

  it("keeps a pass-band tone when upsampling (8000 -> 44100 Hz)", function()
    local y = mio.resample(sine(1000, 8000, 800), 8000, 44100)
    assert.are.same({ 4410 }, y:shape())
    local amp, res = fit_tone(y, 44100, 1000, 300, 4100)
    assert(math.abs(amp - 1) < 1e-3 and res < 1e-3, ("amp %g res %g"):format(amp, res))
  end)

  it("keeps DC, is the identity at equal rates, and resamples each row", function()
    local y = mio.resample(miles.ones(3000, { dtype = "float32" }), 48000, 16000)
    H.assert_close(y:narrow(1, 50, 900), miles.ones(900), 0, 1e-4)
    local x = miles.randn(2, 100)
    H.assert_close(mio.resample(x, 16000, 16000), x, 0, 1e-6)
    local r = mio.resample(x, 16000, 8000)
    assert.are.same({ 2, 50 }, r:shape())
    H.assert_close(r[2], mio.resample(x[2], 16000, 8000), 0, 0)
  end)

  it("rejects bad arguments", function()
    expect_error(function() mio.resample(miles.zeros(4), 0, 16000) end, "resample")
    expect_error(function() mio.resample(miles.zeros(2, 2, 2), 8000, 16000) end, "resample",
      "[frames] or [channels, frames]")
    expect_error(function() mio.resample(miles.zeros(4, { dtype = "int64" }), 8000, 16000) end,
      "resample", "int64")
  end)
end)

describe("miles.io.write_wav", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rmdir(dir) end)

  it("round-trips float WAV exactly, mono [frames] and stereo [2, frames]", function()
    local p = dir .. "/f.wav"
    local x = miles.rand(2, 500) * 2 - 1
    mio.write_wav(p, x, 44100)
    local y, rate = mio.read_audio(p)
    assert.are.equal(44100, rate)
    assert_equal(y, x, "stereo")
    assert.are.equal("RIFF", read_file(p):sub(1, 4))
    assert.are.equal(3, string.unpack("<I2", read_file(p), 21)) -- WAVE_FORMAT_IEEE_FLOAT
    local m = miles.rand(300)
    mio.write_wav(p, m, 16000, { format = "float" })
    local back = mio.read_audio(p)
    assert.are.same({ 1, 300 }, back:shape())
    assert_equal(back[1], m, "mono")
  end)

  it("round-trips 16-bit PCM within one step, clipping values outside [-1, 1]", function()
    local p = dir .. "/p.wav"
    local x = miles.rand(1, 400) * 1.8 - 0.9
    mio.write_wav(p, x:to("float64"), 8000, { format = "pcm16" })
    assert.are.equal(1, string.unpack("<I2", read_file(p), 21)) -- WAVE_FORMAT_PCM
    assert.are.equal(16, string.unpack("<I2", read_file(p), 35))
    H.assert_close(mio.read_audio(p), x, 0, 1 / 32767 + 1e-6)
    mio.write_wav(p, miles.tensor({ 2, -2, 1, -1, 0 }, { dtype = "float32" }), 8000,
      { format = "pcm16" })
    H.assert_close(mio.read_audio(p), { { 32767 / 32768, -1, 32767 / 32768, -1, 0 } }, 0, 1e-6)
  end)

  it("replaces a file atomically and leaves no temporary file", function()
    local p = dir .. "/a.wav"
    mio.write_wav(p, miles.zeros(10), 8000)
    mio.write_wav(p, miles.ones(20) * 0.5, 8000)
    H.assert_close(mio.read_audio(p), miles.ones(1, 20) * 0.5, 0, 0)
    expect_error(function() mio.write_wav(p, miles.zeros(10), 0) end, "write_wav")
    expect_error(function() mio.write_wav(p, miles.tensor({ 0 / 0 }), 8000, { format = "pcm16" }) end,
      p, "NaN")
    assert.are.same({ "a.wav" }, listdir(dir))
    assert.are.same({ 1, 20 }, mio.read_audio(p):shape())
  end)

  it("rejects what it cannot write, naming the file", function()
    local p = dir .. "/bad.wav"
    expect_error(function() mio.write_wav(p, miles.zeros(4, { dtype = "int64" }), 8000) end,
      "write_wav", p, "int64")
    expect_error(function() mio.write_wav(p, miles.zeros(2, 2, 2), 8000) end, p, "[channels, frames]")
    expect_error(function() mio.write_wav(p, miles.zeros(0), 8000) end, p, "at least 1 frame")
    expect_error(function() mio.write_wav(p, miles.zeros(4), 8000, { format = "mp3" }) end,
      "write_wav", "format")
    expect_error(function() mio.write_wav(dir .. "/no/dir.wav", miles.zeros(4), 8000) end,
      dir .. "/no/dir.wav")
    assert.are.same({}, listdir(dir))
  end)
end)
