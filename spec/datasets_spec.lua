-- The loaders of the paper's data sets (lua/miles/data/{cremad,smnist,luma,mmimdb}.lua
-- and their shared layout.lua), each run on a tiny data set that this spec writes in
-- the real public layout: WAV files (miles.io.write_wav), PNG (write_png), FLV videos
-- and JPEG posters (ffmpeg, from PNG), NPY (miles.save), CIFAR binaries (bytes) and
-- JSON/CSV (text). Checks shapes, dtypes, labels and values known by hand, split
-- sizes, determinism for a seed, the cache reused on a second load, and the messages
-- of a missing or incomplete folder.
local fs = require "miles.fs"
local miles = require "miles"
local H = require "spec.helpers"
local layout = require "miles.data.layout"
local cremad = require "miles.data.cremad"
local smnist = require "miles.data.smnist"
local luma = require "miles.data.luma"
local mmimdb = require "miles.data.mmimdb"

-- --- helpers ---------------------------------------------------------------

local function mkdir(path)
  assert(os.execute("mkdir -p " .. fs.quote(path)))
end

local function sh(cmd)
  assert(os.execute(cmd), "command failed: " .. cmd)
end

local function ffmpeg(args)
  assert(fs.have("ffmpeg"), "these specs need ffmpeg (apt-get install ffmpeg)")
  sh("ffmpeg -nostdin -loglevel error -y " .. args)
end

-- A sine of `freq` Hz, `seconds` long at 16 kHz, amplitude amp (0.5) (float32 [T]).
local function sine(freq, seconds, amp)
  local n, x = math.floor(16000 * seconds), {}
  for i = 1, n do x[i] = (amp or 0.5) * math.sin(2 * math.pi * freq * (i - 1) / 16000) end
  return miles.tensor(x, { dtype = "float32" })
end

-- A uint8 [3, h, w] image of one colour.
local function solid(rgb, h, w)
  local img = miles.zeros(3, h, w, { dtype = "uint8" })
  for c = 1, 3 do img[c]:fill_(rgb[c]) end
  return img
end

-- The mean of channel c of image i of a uint8 batch, as a number.
local function channel_mean(images, i, c)
  return images[i][c]:to("float32"):mean():item()
end

-- Assert that err contains every given text (plain, not a pattern).
local function contains(err, ...)
  for _, text in ipairs({ ... }) do
    assert(err:find(text, 1, true), ("expected the message to contain %q, got: %s"):format(text, err))
  end
end

local function same_tensor(a, b)
  return a:dtype() == b:dtype() and table.concat(a:shape(), "x") == table.concat(b:shape(), "x")
    and H.max_abs_diff(a, b) == 0
end

local function list(t) return t:totable() end

-- --- layout --------------------------------------------------------------------

describe("data.layout", function()
  local dir
  setup(function() dir = H.tmpdir() end)
  teardown(function() H.rmdir(dir) end)

  it("reads CSV with a header, quoted fields and CRLF lines", function()
    H.write_file(dir .. "/a.csv", 'id,path,label\r\n1,"x, ""y"".wav",cat\r\n2,b.wav,\r\n')
    local rows = layout.read_csv("t", dir .. "/a.csv", { "path", "label" })
    assert.are.same({ { id = "1", path = 'x, "y".wav', label = "cat" },
                      { id = "2", path = "b.wav", label = "" } }, rows)
    H.write_file(dir .. "/b.csv", "path,name\nx.wav,cat\n")
    contains(H.error_of(layout.read_csv, "t", dir .. "/b.csv", { "path", "label" }),
      "t: expected a CSV file with the columns path, label (no column 'label') at " .. dir .. "/b.csv")
    H.write_file(dir .. "/c.csv", 'path,label\n"x.wav,cat\n')
    contains(H.error_of(layout.read_csv, "t", dir .. "/c.csv", { "path", "label" }),
      dir .. "/c.csv: line 2 is not valid CSV")
  end)

  it("resizes by box averaging then bilinear, keeping uint8", function()
    -- 4x4 -> 2x2 shrinks by 2: the mean of each 2x2 box
    local img = miles.tensor({ { { 0, 2, 4, 6 }, { 2, 4, 6, 8 }, { 10, 10, 20, 20 }, { 10, 10, 20, 21 } } },
      { dtype = "uint8" })
    assert.are.same({ { { 2, 6 }, { 10, 20 } } }, list(layout.resize(img, 2, 2)))  -- 20.25 rounds to 20
    assert.are.equal("uint8", layout.resize(img, 2, 2):dtype())
  end)

  it("keeps a string in a uint8 tensor", function()
    local s = ("<pad>\n<unk>\nthe\n"):rep(3000)
    assert.are.equal(s, layout.tensor_string(layout.string_tensor(s)))
  end)
end)

-- --- CREMA-D -------------------------------------------------------------------

H.describe_needing("ffmpeg", describe, pending)("data.cremad", function()
  local root, frames_root, cache_a, cache_b
  local RED, BLUE, GREEN = { 200, 40, 40 }, { 40, 40, 200 }, { 40, 200, 40 }
  -- ids in sorted order, their labels (NEU 1, HAP 2, ANG 6) and colours; the last
  -- clip's video is red for 0.4 s then green for 0.4 s, its audio 1 s long: the
  -- frame at half the audio (0.5 s) is green, the first frame red
  local CLIPS = {
    { "1001_DFA_ANG_XX", 6, RED }, { "1001_DFA_NEU_XX", 1, BLUE }, { "1002_IEO_ANG_HI", 6, RED },
    { "1002_IEO_NEU_XX", 1, BLUE }, { "1003_TIE_HAP_LO", 2, GREEN }, { "1003_TIE_HAP_MD", 2, GREEN },
  }

  setup(function()
    root, frames_root, cache_a, cache_b = H.tmpdir(), H.tmpdir(), H.tmpdir(), H.tmpdir()
    mkdir(root .. "/AudioWAV")
    mkdir(root .. "/VideoFlash")
    local red = root .. "/red.png"
    miles.io.write_png(red, solid(RED, 24, 32))
    for i, c in ipairs(CLIPS) do
      local two = i == #CLIPS
      miles.io.write_wav(root .. "/AudioWAV/" .. c[1] .. ".wav", sine(500 * i, two and 1 or 0.5), 16000)
      local png, flv = root .. "/" .. c[1] .. ".png", root .. "/VideoFlash/" .. c[1] .. ".flv"
      miles.io.write_png(png, solid(c[3], 24, 32))
      if two then
        ffmpeg(("-loop 1 -t 0.4 -i %s -loop 1 -t 0.4 -i %s -filter_complex '[0][1]concat=n=2:v=1' -r 5 %s")
          :format(red, png, flv))
      else
        ffmpeg(("-loop 1 -i %s -t 0.4 -r 5 %s"):format(png, flv))
      end
      os.remove(png)
    end
    os.remove(red)
    -- 12 clips with pre-extracted frames: 4 per class NEU, HAP, ANG
    mkdir(frames_root .. "/AudioWAV")
    mkdir(frames_root .. "/frames")
    local emo = { "NEU", "HAP", "ANG" }
    for k = 1, 3 do
      for a = 1, 4 do
        local id = ("10%02d_DFA_%s_XX"):format(a, emo[k])
        miles.io.write_wav(frames_root .. "/AudioWAV/" .. id .. ".wav", sine(300 * k, 0.2), 16000)
        miles.io.write_png(frames_root .. "/frames/" .. id .. ".png", solid({ 60 * k, 0, 0 }, 6, 8))
      end
    end
  end)
  teardown(function()
    for _, d in ipairs({ root, frames_root, cache_a, cache_b }) do H.rmdir(d) end
  end)

  local function load(dir, extra)
    local o = { cache_dir = dir, size = 16, quiet = true }
    for k, v in pairs(extra or {}) do o[k] = v end
    return cremad.load(root, o)
  end

  it("makes the paper's 257 x 299 log spectrogram of a clip repeated to 3 s", function()
    local x = sine(4000, 1)
    local s = cremad.spectrogram(x)
    assert.are.same({ 257, 299 }, s:shape())
    -- 4000 Hz is bin 4000 / (16000 / 512) = 128 from 0, row 129
    assert.are.equal(129, s:mean(2):argmax():item())
    -- the clip is repeated to fill 3 s: three copies give the same clip
    assert.are.equal(0, H.max_abs_diff(s, cremad.spectrogram(miles.cat({ x, x, x }, 1))))
    -- silence is the floor ln(1e-7)
    H.assert_close(cremad.spectrogram(miles.zeros(100)), miles.full({ 257, 299 }, math.log(1e-7)),
      1e-5, 1e-5, "floor")
  end)

  it("loads frames from the videos with ffmpeg and spectrograms, aligned with the labels", function()
    local ds, info = load(cache_a)
    assert.is_true(info.built)
    assert.are.same({ 6, 1, 16, 16 }, ds.modalities.audio:shape())
    assert.are.equal("float32", ds.modalities.audio:dtype())
    assert.are.same({ 6, 3, 16, 16 }, ds.modalities.image:shape())
    assert.are.equal("uint8", ds.modalities.image:dtype())
    assert.are.same({ "NEU", "HAP", "SAD", "FEA", "DIS", "ANG" }, ds.classes)
    for i, c in ipairs(CLIPS) do
      assert.are.equal(c[2], ds.labels[i]:item())
      for ch = 1, 3 do
        local m = channel_mean(ds.modalities.image, i, ch)
        assert.is_true(math.abs(m - c[3][ch]) < 20, ("clip %d channel %d: %g vs %d"):format(i, ch, m, c[3][ch]))
      end
    end
    -- the sines rise with the clip: the loudest resized row rises too
    local peak = ds.modalities.audio:select(2, 1):mean(3):argmax(2)
    for i = 2, 6 do assert.is_true(peak[i]:item() >= peak[i - 1]:item()) end
    assert.is_true(peak[6]:item() > peak[1]:item())
  end)

  it("reuses the cache on a second load and builds again when asked", function()
    local _, first = load(cache_a)
    local manifest = H.read_file(first.path .. "/manifest.json")
    local ds, info = load(cache_a)
    assert.is_false(info.built)
    assert.are.equal(manifest, H.read_file(info.path .. "/manifest.json"))
    assert.are.equal(6, #ds)
    local _, again = load(cache_a, { rebuild = true })
    assert.is_true(again.built)
  end)

  it("splits 70/15/15 by class, the same for a seed, from pre-extracted frames", function()
    local function frames_load(dir, extra)
      local o = { cache_dir = dir, size = 4, quiet = true, frames = frames_root .. "/frames",
        train = 0.5, val = 0.25, test = 0.25 }
      for k, v in pairs(extra or {}) do o[k] = v end
      return cremad.load(frames_root, o)
    end
    local ds = frames_load(cache_a)
    -- sorted ids: 1001_DFA_ANG, 1001_DFA_HAP, 1001_DFA_NEU, 1002_DFA_ANG, ...
    assert.are.same({ 6, 2, 1, 6, 2, 1, 6, 2, 1, 6, 2, 1 }, list(ds.labels))
    assert.are.equal(120, channel_mean(ds.modalities.image, 2, 1))  -- HAP frames are red 120
    assert.are.equal(180, channel_mean(ds.modalities.image, 1, 1))  -- ANG frames are red 180
    -- 4 per class: 2 train, 1 val, 1 test each
    for _, name in ipairs({ "train", "val", "test" }) do
      local counts = {}
      for _, y in ipairs(list(ds:split(name):labels())) do counts[y] = (counts[y] or 0) + 1 end
      local want = name == "train" and 2 or 1
      assert.are.same({ [1] = want, [2] = want, [6] = want }, counts, name)
    end
    local again = frames_load(cache_b)
    assert.is_true(same_tensor(ds.modalities.audio, again.modalities.audio))
    assert.is_true(same_tensor(ds.modalities.image, again.modalities.image))
    assert.are.same(list(ds.splits.train), list(again.splits.train))
    local other = frames_load(cache_b, { seed = 7 })
    assert.are_not.same(list(ds.splits.train), list(other.splits.train))
    local random = frames_load(cache_b, { split = "random", train = 0.7, val = 0.15, test = 0.15 })
    -- 12 x (0.7, 0.15, 0.15) = 8.4, 1.8, 1.8 -> 8, 2, 2 by largest remainders
    assert.are.same({ 8, 2, 2 }, { #random:split("train"), #random:split("val"), #random:split("test") })
  end)

  it("says what is missing where", function()
    contains(H.error_of(cremad.load, root .. "/nope"),
      "cremad: expected the data set's folder at " .. root .. "/nope (see README)")
    local empty = H.tmpdir()
    contains(H.error_of(cremad.load, empty),
      "cremad: expected a folder of the audio clips, AudioWAV/<Actor_Sentence_EMO_Level>.wav at "
      .. empty .. "/AudioWAV (see README)")
    mkdir(empty .. "/AudioWAV")
    H.write_file(empty .. "/AudioWAV/1001_DFA_XYZ_XX.wav", "")
    contains(H.error_of(cremad.load, empty), "EMO one of NEU HAP SAD FEA DIS ANG at "
      .. empty .. "/AudioWAV/1001_DFA_XYZ_XX.wav")
    H.rmdir(empty)
    local video = root .. "/VideoFlash/1002_IEO_NEU_XX.flv"
    sh(("mv %s %s.bak"):format(video, video))
    local err = H.error_of(load, cache_a)
    sh(("mv %s.bak %s"):format(video, video))
    contains(err, "cremad: expected the video of every clip, VideoFlash/<id>.flv (1 of 6 missing, "
      .. "the first) at " .. video)
    contains(H.error_of(load, cache_a, { sizes = 1 }), "cremad.load: unknown option 'sizes'")
  end)
end)

-- --- S-MNIST -------------------------------------------------------------------

describe("data.smnist", function()
  local root, cache_a, cache_b
  local N_TRAIN, N_TEST = 14, 6

  -- data_wr row i: pixel p (0-based) = (p + i) % 256; data_sp row i: coefficient m
  -- (1..13) of every frame = 100 i + m, except row 1 of the training file whose
  -- frame f (1..39) holds f everywhere; labels (i - 1) % 10.
  local function write_part(part, n)
    local wr, sp, y = {}, {}, {}
    for i = 1, n do
      local row_wr, row_sp = {}, {}
      for p = 0, 783 do row_wr[p + 1] = (p + i) % 256 end
      for f = 1, 39 do
        for m = 1, 13 do
          row_sp[(f - 1) * 13 + m] = (part == "train" and i == 1) and f or 100 * i + m
        end
      end
      wr[i], sp[i], y[i] = row_wr, row_sp, (i - 1) % 10
    end
    miles.save(root .. "/data_wr_" .. part .. ".npy", miles.tensor(wr, { dtype = "uint8" }))
    miles.save(root .. "/data_sp_" .. part .. ".npy", miles.tensor(sp, { dtype = "float64" }))
    local labels = miles.tensor(y, { dtype = "int64" })
    if part == "test" then labels = labels:reshape(n, 1) end
    miles.save(root .. "/labels_" .. part .. ".npy", labels)
  end

  setup(function()
    root, cache_a, cache_b = H.tmpdir(), H.tmpdir(), H.tmpdir()
    write_part("train", N_TRAIN)
    write_part("test", N_TEST)
  end)
  teardown(function()
    for _, d in ipairs({ root, cache_a, cache_b }) do H.rmdir(d) end
  end)

  local function load(dir, extra)
    local o = { cache_dir = dir, train = 8, val = 4, test = 3, quiet = true }
    for k, v in pairs(extra or {}) do o[k] = v end
    return smnist.load(root, o)
  end

  -- torch's bilinear (align_corners false) source coordinate of output j, 1-based,
  -- resizing n_in -> n_out: a ramp 1..n_in becomes this.
  local function ramp(j, n_in, n_out)
    return math.min(math.max((j - 0.5) * n_in / n_out - 0.5, 0), n_in - 1) + 1
  end

  it("reshapes the pixels and resizes the 39 x 13 MFCC to 28 x 28", function()
    local ds = load(cache_a)
    local x, a = ds.modalities.image, ds.modalities.audio
    assert.are.same({ 20, 1, 28, 28 }, x:shape())
    assert.are.equal("uint8", x:dtype())
    assert.are.same({ 20, 1, 28, 28 }, a:shape())
    assert.are.equal("float32", a:dtype())
    assert.are.equal((28 + 3) % 256, x[3][1][2][1]:item())       -- row 3, pixel 28
    assert.are.equal((5 * 28 + 7 + 2) % 256, x[N_TRAIN + 2][1][6][8]:item())  -- test row 2
    -- training row 1 rises with the frame (down the image), row 2 with the coefficient
    local across = {}
    for k = 1, 28 do across[k] = 200 + ramp(k, 13, 28) end
    for r = 1, 28 do
      H.assert_close(a[1][1][r], miles.full({ 28 }, ramp(r, 39, 28)), 1e-5, 1e-5, "frames")
      H.assert_close(a[2][1][r], miles.tensor(across), 1e-5, 1e-4, "coefficients")
    end
    local want = {}
    for i = 1, N_TRAIN do want[i] = (i - 1) % 10 + 1 end
    for i = 1, N_TEST do want[N_TRAIN + i] = (i - 1) % 10 + 1 end
    assert.are.same(want, list(ds.labels))
  end)

  it("draws train and val from the training file, test from the test file", function()
    local ds = load(cache_a)
    assert.are.same({ 8, 4, 3 }, { #ds:split("train"), #ds:split("val"), #ds:split("test") })
    local seen = {}
    for _, name in ipairs({ "train", "val" }) do
      for _, i in ipairs(list(ds.splits[name])) do
        assert.is_true(i >= 1 and i <= N_TRAIN and not seen[i])
        seen[i] = true
      end
    end
    for _, i in ipairs(list(ds.splits.test)) do assert.is_true(i > N_TRAIN and i <= N_TRAIN + N_TEST) end
    local again = load(cache_b)
    assert.are.same(list(ds.splits.train), list(again.splits.train))
    assert.is_true(same_tensor(ds.modalities.audio, again.modalities.audio))
    local other = load(cache_a, { seed = 3 })
    assert.are_not.same(list(ds.splits.train), list(other.splits.train))
  end)

  it("reuses the cache for any seed and sizes", function()
    local _, first = load(cache_a)
    local manifest = H.read_file(first.path .. "/manifest.json")
    local _, info = load(cache_a, { seed = 5, train = 2 })
    assert.is_false(info.built)
    assert.are.equal(manifest, H.read_file(info.path .. "/manifest.json"))
  end)

  it("says what is missing where, and which sizes the files cannot give", function()
    contains(H.error_of(smnist.load, root, { cache_dir = cache_a, quiet = true }),
      "smnist: asks for 8000+2000 training and 2000 test samples, the files have 14 and 6")
    local path = root .. "/labels_test.npy"
    sh(("mv %s %s.bak"):format(path, path))
    local err = H.error_of(load, cache_a)
    sh(("mv %s.bak %s"):format(path, path))
    contains(err, "smnist: expected labels_test.npy (digit labels 0..9, N) at " .. path .. " (see README)")
    local bad = H.tmpdir()
    sh(("cp %s/*.npy %s/"):format(root, bad))
    miles.save(bad .. "/data_sp_train.npy", miles.zeros(N_TRAIN, 500))
    err = H.error_of(smnist.load, bad, { cache_dir = cache_a, quiet = true })
    H.rmdir(bad)
    contains(err, "data_sp_train.npy has shape [14, 500], expected [14, 507]")
  end)
end)

-- --- LUMA ----------------------------------------------------------------------

describe("data.luma", function()
  local root, cache_a, cache_b
  -- utterances per class and the sine of each class (utterance k at amplitude
  -- 0.1 k); zebra has no CIFAR images
  local CLIPS = { cat = 5, dog = 4, fish = 3, truck = 6, zebra = 9 }
  local FREQ = { cat = 500, dog = 1500, fish = 3000, truck = 6000, zebra = 250 }
  local VALUE = { cat = 50, dog = 100, fish = 150, truck = 200 }  -- grey level of its images

  -- A CIFAR binary batch of solid images: records {label bytes..., grey value}.
  local function write_cifar(path, records)
    local parts = {}
    for _, r in ipairs(records) do
      local value = table.remove(r)
      parts[#parts + 1] = string.char(table.unpack(r)) .. string.char(value):rep(3072)
    end
    H.write_file(path, table.concat(parts))
  end

  setup(function()
    root, cache_a, cache_b = H.tmpdir(), H.tmpdir(), H.tmpdir()
    mkdir(root .. "/audio/cv_audio")
    local lines, names = { "index,path,label" }, {}
    for name in pairs(CLIPS) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      for k = 1, CLIPS[name] do
        local path = ("cv_audio/%s_%d.wav"):format(name, k)
        miles.io.write_wav(root .. "/audio/" .. path, sine(FREQ[name], 0.25, 0.1 * k), 16000)
        lines[#lines + 1] = ('%d,"%s",%s'):format(#lines, path, name)
      end
    end
    H.write_file(root .. "/audio/datalist.csv", table.concat(lines, "\n") .. "\n")
    local c10 = root .. "/cifar-10-batches-bin"
    mkdir(c10)
    H.write_file(c10 .. "/batches.meta.txt",
      "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n")
    -- labels are 0-based bytes: cat 3, dog 5, truck 9, bird 2
    write_cifar(c10 .. "/data_batch_1.bin", { { 3, VALUE.cat }, { 5, VALUE.dog }, { 2, 7 } })
    for b = 2, 5 do write_cifar(c10 .. "/data_batch_" .. b .. ".bin", { { 5, VALUE.dog } }) end
    write_cifar(c10 .. "/test_batch.bin", { { 3, VALUE.cat }, { 9, VALUE.truck } })
    local c100 = root .. "/cifar-100-binary"
    mkdir(c100)
    local fine = {}
    for k = 1, 100 do fine[k] = "class" .. k end
    fine[1], fine[2] = "aquarium_fish", "pickup_truck"
    H.write_file(c100 .. "/fine_label_names.txt", table.concat(fine, "\n") .. "\n")
    write_cifar(c100 .. "/train.bin", { { 0, 0, VALUE.fish }, { 1, 1, VALUE.truck }, { 2, 5, 9 } })
    write_cifar(c100 .. "/test.bin", { { 0, 0, VALUE.fish } })
  end)
  teardown(function()
    for _, d in ipairs({ root, cache_a, cache_b }) do H.rmdir(d) end
  end)

  local function load(dir, extra)
    local o = { cache_dir = dir, n_classes = 3, per_class = 3, size = 12, n_mels = 16, frames = 8,
      quiet = true }
    for k, v in pairs(extra or {}) do o[k] = v end
    return luma.load(root, o)
  end

  it("keeps the classes with the most utterances and CIFAR images, balanced", function()
    local ds = load(cache_a)
    -- truck 6, cat 5, dog 4 utterances (fish has 3, zebra no images); alphabetical
    assert.are.same({ "cat", "dog", "truck" }, ds.classes)
    assert.are.same({ 1, 1, 1, 2, 2, 2, 3, 3, 3 }, list(ds.labels))
    assert.are.same({ 9, 3, 12, 12 }, ds.modalities.image:shape())
    assert.are.equal("uint8", ds.modalities.image:dtype())
    assert.are.same({ 9, 1, 16, 8 }, ds.modalities.audio:shape())
    assert.are.equal("float32", ds.modalities.audio:dtype())
  end)

  it("pairs each image and utterance with its class", function()
    local ds = load(cache_a)
    local a = ds.modalities.audio:select(2, 1):mean(3):argmax(2)  -- loudest mel band
    local band = {}
    for i = 1, 9 do
      local name = ds.classes[ds.labels[i]:item()]
      for c = 1, 3 do assert.are.equal(VALUE[name], channel_mean(ds.modalities.image, i, c)) end
      band[name] = band[name] or a[i]:item()
      assert.are.equal(band[name], a[i]:item(), name)
    end
    assert.is_true(band.cat < band.dog and band.dog < band.truck)
  end)

  it("splits in the paper's proportions, or the given counts, the same for a seed", function()
    local ds = load(cache_a)
    -- 9 x (25, 4, 4) / 33 = 6.82, 1.09, 1.09 -> 7, 1, 1
    assert.are.same({ 7, 1, 1 }, { #ds:split("train"), #ds:split("val"), #ds:split("test") })
    local counts = load(cache_a, { train = 5, val = 2, test = 2 })
    assert.are.same({ 5, 2, 2 }, { #counts:split("train"), #counts:split("val"), #counts:split("test") })
    local again = load(cache_b)
    assert.is_true(same_tensor(ds.modalities.audio, again.modalities.audio))
    assert.is_true(same_tensor(ds.modalities.image, again.modalities.image))
    assert.are.same(list(ds.splits.test), list(again.splits.test))
    local other, info = load(cache_b, { seed = 1 })
    assert.is_true(info.built)  -- the pairs depend on the seed
    assert.is_false(same_tensor(ds.modalities.audio, other.modalities.audio))
  end)

  it("reuses the cache on a second load", function()
    local _, first = load(cache_a)
    local manifest = H.read_file(first.path .. "/manifest.json")
    local _, info = load(cache_a)
    assert.is_false(info.built)
    assert.are.equal(manifest, H.read_file(info.path .. "/manifest.json"))
  end)

  it("takes the classes it is given", function()
    local ds = load(cache_a, { classes = { "fish", "cat" } })
    assert.are.same({ "cat", "fish" }, ds.classes)
    assert.are.equal(VALUE.fish, channel_mean(ds.modalities.image, 4, 1))
    contains(H.error_of(load, cache_a, { classes = { "zebra" } }),
      "luma: class 'zebra' has 9 utterances (needs 3) and no CIFAR images")
  end)

  it("says what is missing where", function()
    contains(H.error_of(load, cache_a, { n_classes = 5 }),
      "luma: only 4 classes have 3 utterances in audio/datalist.csv and CIFAR images, 5 asked for")
    local bin = root .. "/cifar-100-binary/test.bin"
    sh(("mv %s %s.bak"):format(bin, bin))
    local err = H.error_of(load, cache_a)
    sh(("mv %s.bak %s"):format(bin, bin))
    contains(err, "luma: expected the CIFAR-100 binary batch cifar-100-binary/test.bin at " .. bin)
    local wav = root .. "/audio/cv_audio/dog_2.wav"
    sh(("mv %s %s.bak"):format(wav, wav))
    err = H.error_of(load, cache_a, { per_class = 4, n_classes = 3 })
    sh(("mv %s.bak %s"):format(wav, wav))
    contains(err, "luma: expected the WAV files listed in audio/datalist.csv (1 of 12 missing, "
      .. "the first) at " .. wav)
    local csv = root .. "/audio/datalist.csv"
    sh(("mv %s %s.bak"):format(csv, csv))
    err = H.error_of(load, cache_a)
    sh(("mv %s.bak %s"):format(csv, csv))
    contains(err, "luma: expected a CSV file with the columns path, label at " .. csv)
  end)
end)

-- --- MM-IMDb -------------------------------------------------------------------

H.describe_needing("ffmpeg", describe, pending)("data.mmimdb", function()
  local root, cache_a
  local MOVIES = {
    { "0000001", '{"plot": ["A dog and a cat.", "The dog chases the cat; the cat runs!"], '
      .. '"genres": ["Comedy", "Family"], "title": "One"}', { 200, 40, 40 } },
    { "0000002", '{"plot": ["The cat sleeps."], "genres": ["Drama"]}', { 40, 200, 40 } },
    { "0000003", '{"plot": ["Dog days, dog nights."], "genres": ["Drama", "Sci-Fi", "News"]}', "grey" },
    { "0000004", '{"plot": ["A zebra and the dog."], "genres": ["Film-Noir"]}', { 40, 40, 200 } },
    { "0000005", '{"plot": ["Cat \\u00e9t\\u00e9 cat"], "genres": ["Drama", "Western"]}', { 90, 90, 90 } },
    { "0000006", '{"plot": [], "genres": []}', { 10, 10, 10 } },
  }

  setup(function()
    root, cache_a = H.tmpdir(), H.tmpdir()
    mkdir(root .. "/dataset")
    H.write_file(root .. "/split.json",
      '{"train": ["0000001", "0000002", "0000003"], "dev": ["0000004"], "test": ["0000005", "0000006"]}')
    for _, m in ipairs(MOVIES) do
      local base = root .. "/dataset/" .. m[1]
      H.write_file(base .. ".json", m[2])
      local png = base .. ".png"
      if m[3] == "grey" then
        miles.io.write_png(png, miles.full({ 1, 30, 20 }, 120):to("uint8"))
        ffmpeg(("-i %s -pix_fmt gray %s.jpeg"):format(png, base))
      else
        miles.io.write_png(png, solid(m[3], 30, 20))
        ffmpeg(("-i %s %s.jpeg"):format(png, base))
      end
      os.remove(png)
    end
  end)
  teardown(function()
    H.rmdir(root)
    H.rmdir(cache_a)
  end)

  local function load(extra)
    local o = { cache_dir = cache_a, size = 8, max_len = 6, quiet = true }
    for k, v in pairs(extra or {}) do o[k] = v end
    return mmimdb.load(root, o)
  end

  it("builds the vocabulary from the training plots only, ids from 1 = pad, 2 = unk", function()
    local ds = load()
    -- train words: the 4, cat 3, dog 3, then once each (min_count 2 drops them)
    assert.are.same({ "<pad>", "<unk>", "the", "cat", "dog" }, ds.vocab)
    assert.are.same({ 6, 6 }, ds.modalities.text:shape())
    local text = list(ds.modalities.text:to("int64"))
    assert.are.same({ 3, 5, 2, 3, 4, 3 }, text[1])  -- the longest plot: the dog chases the cat the (cut)
    assert.are.same({ 3, 4, 2, 1, 1, 1 }, text[2])  -- the cat sleeps, padded
    assert.are.same({ 2, 2, 2, 3, 5, 1 }, text[4])  -- a zebra and the dog (dev: not in the vocabulary)
    assert.are.same({ 4, 2, 4, 1, 1, 1 }, text[5])  -- cat été cat: words cat, t, cat
    assert.are.same({ 1, 1, 1, 1, 1, 1 }, text[6])  -- no plot
  end)

  it("has 23 multi-hot genres, posters as RGB and the split of split.json", function()
    local ds = load()
    assert.are.equal(23, #ds.classes)
    assert.are.same({ 6, 23 }, ds.labels:shape())
    assert.are.equal("float32", ds.labels:dtype())
    local y = list(ds.labels)
    local function hot(...)
      local row = {}
      for g = 1, 23 do row[g] = 0 end
      for _, g in ipairs({ ... }) do row[g] = 1 end
      return row
    end
    assert.are.same(hot(2, 13), y[1])    -- Comedy, Family
    assert.are.same(hot(1, 11), y[3])    -- Drama, Sci-Fi (News is not one of the 23)
    assert.are.same(hot(23), y[4])       -- Film-Noir
    assert.are.same(hot(1, 20), y[5])    -- Drama, Western
    assert.are.same(hot(), y[6])
    assert.are.same({ 6, 3, 8, 8 }, ds.modalities.image:shape())
    assert.are.equal("uint8", ds.modalities.image:dtype())
    for c, v in ipairs({ 200, 40, 40 }) do
      assert.is_true(math.abs(channel_mean(ds.modalities.image, 1, c) - v) <= 6)
    end
    for c = 1, 3 do  -- the grey poster repeated in 3 channels
      assert.is_true(math.abs(channel_mean(ds.modalities.image, 3, c) - 120) <= 3)
    end
    assert.are.same({ { 1, 2, 3 }, { 4 }, { 5, 6 } },
      { list(ds.splits.train), list(ds.splits.val), list(ds.splits.test) })
  end)

  it("keeps the vocabulary in the cache and reuses it", function()
    local first, built = load()
    local manifest = H.read_file(built.path .. "/manifest.json")
    local ds, info = load()
    assert.is_false(info.built)
    assert.are.equal(manifest, H.read_file(info.path .. "/manifest.json"))
    assert.are.same(first.vocab, ds.vocab)
    local small = load({ min_count = 1, max_vocab = 4 })
    assert.are.same({ "<pad>", "<unk>", "the", "cat", "dog", "chases" }, small.vocab)
  end)

  it("says what is missing where", function()
    local jpeg = root .. "/dataset/0000005.jpeg"
    sh(("mv %s %s.bak"):format(jpeg, jpeg))
    local err = H.error_of(load)
    sh(("mv %s.bak %s"):format(jpeg, jpeg))
    contains(err, "mmimdb: expected the files of every movie in split.json, dataset/<id>.json and "
      .. "dataset/<id>.jpeg (1 of 12 missing, the first) at " .. jpeg .. " (see README)")
    local split = root .. "/split.json"
    sh(("mv %s %s.bak"):format(split, split))
    err = H.error_of(load)
    sh(("mv %s.bak %s"):format(split, split))
    contains(err, 'mmimdb: expected split.json with lists "train", "dev" and "test" of movie ids at '
      .. split)
    local bad = H.tmpdir()
    mkdir(bad .. "/dataset")
    H.write_file(bad .. "/split.json", '{"train": ["1"], "dev": [], "test": []}')
    H.write_file(bad .. "/dataset/1.json", '{"plot": ["x"], "genres": ["Drama"]')
    sh(("cp %s/dataset/0000001.jpeg %s/dataset/1.jpeg"):format(root, bad))
    err = H.error_of(mmimdb.load, bad, { cache_dir = cache_a, quiet = true })
    H.rmdir(bad)
    contains(err, "mmimdb: " .. bad .. "/dataset/1.json: bad JSON")
  end)
end)
