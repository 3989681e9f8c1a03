--- LUMA (Bezirganyan et al. 2024) from its audio release and the CIFAR binaries,
-- as in the MILES paper: 22 balanced classes of 1500 (image, utterance) pairs,
-- images 96 x 96 x 3, audio a 96-band mel spectrogram of 96 frames.
--
--   local luma = require "miles.data.luma"
--   local ds, info = luma.load("/data/luma", { seed = 0 })
--   -- ds.modalities.image uint8 [N, 3, 96, 96], ds.modalities.audio float32
--   -- [N, 1, 96, 96], ds.labels int64 (ds.classes, alphabetical), splits
--   -- train/val/test (25000/4000/4000 of 33000)
--
-- Layout: <root>/audio/datalist.csv (columns path, label; paths relative to
-- <root>/audio/) with its WAV files; <root>/cifar-10-batches-bin/
-- {data_batch_1..5,test_batch}.bin and batches.meta.txt;
-- <root>/cifar-100-binary/{train,test}.bin and fine_label_names.txt (the
-- folders of the CIFAR binary tarballs).
--
-- Classes: LUMA names its classes by the CIFAR label, with six CIFAR-100 names
-- changed (M.CIFAR_NAMES, from LUMA's image_processing.py: aquarium_fish ->
-- fish, pickup_truck -> truck, ...). The paper keeps "the top 22 classes having
-- 1,500 or more samples"; here a class's samples are its utterances in
-- datalist.csv, so the default classes are the n_classes (22) with the most
-- utterances among those that also have CIFAR images (ties by name), each
-- needing per_class (1500) of them. opts.classes = a list of names chooses
-- them instead.
--
-- Pairs: for each class, per_class utterances drawn without replacement and as
-- many images drawn from its CIFAR-10/100 train and test images (a CIFAR-100
-- class has 600: they are reused, each image before any twice), all from the
-- seed. Image: resized 32 -> 96 bilinear. Audio: mono at 16 kHz, cut or padded
-- with silence to (frames - 1) * hop samples, torchaudio's MelSpectrogram
-- defaults (n_fft 400, hop 200, power 2, HTK mels without norm) with 96 mels,
-- in decibels (10 log10, floored 80 dB below each clip's peak): 96 x 96.
-- Splits: a seeded random split in the proportions 25000/4000/4000 of the
-- pairs (exact counts with opts.train/val/test).
--
-- Options: seed (0, the pairs and the split), classes (false: the default
-- rule), n_classes (22), per_class (1500), train/val/test (false: the paper's
-- proportions), size (96), n_mels (96), frames (96), cifar_names
-- (M.CIFAR_NAMES), cache_dir, rebuild, quiet.
local fs = require "miles.fs"
local core = require "miles.core"
local data = require "miles.data"
local signal = require "miles.signal"
local layout = require "miles.data.layout"

local D = core._data

local M = {}

M.NAME = "luma"
M.SAMPLE_RATE = 16000
M.N_FFT = 400
M.HOP = 200
M.CIFAR_NAMES = { aquarium_fish = "fish", pickup_truck = "truck", oak_tree = "oak", rose = "roses",
  pine_tree = "pine", palm_tree = "palm" }
M.SPLIT = { train = 25000, val = 4000, test = 4000 }
M.DEFAULTS = { classes = false, n_classes = 22, per_class = 1500, train = false, val = false,
  test = false, size = 96, n_mels = 96, frames = 96, cifar_names = M.CIFAR_NAMES }

local CIFAR = {
  { dir = "cifar-10-batches-bin", variant = 10, names = "batches.meta.txt",
    files = { "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
              "data_batch_5.bin", "test_batch.bin" } },
  { dir = "cifar-100-binary", variant = 100, names = "fine_label_names.txt",
    files = { "train.bin", "test.bin" } },
}

-- The CIFAR files (checked) and each variant's class names in LUMA's naming.
local function cifar_sources(root, o)
  local sources, files = {}, {}
  for _, c in ipairs(CIFAR) do
    local dir = root .. "/" .. c.dir
    local meta = layout.file(M.NAME, dir .. "/" .. c.names,
      ("the CIFAR-%d class names, %s/%s"):format(c.variant, c.dir, c.names))
    local names = {}
    for line in fs.read(meta):gmatch("[^\r\n]+") do
      local name = line:match("^%s*(.-)%s*$")
      if name ~= "" then names[#names + 1] = o.cifar_names[name] or name end
    end
    files[#files + 1] = meta
    local paths = {}
    for i, f in ipairs(c.files) do
      paths[i] = layout.file(M.NAME, dir .. "/" .. f,
        ("the CIFAR-%d binary batch %s/%s"):format(c.variant, c.dir, f))
      files[#files + 1] = paths[i]
    end
    sources[#sources + 1] = { variant = c.variant, names = names, paths = paths }
  end
  return sources, files
end

-- The classes: o.classes, or the n_classes with the most utterances among those
-- with CIFAR images. by_class: name -> list of audio paths.
local function choose_classes(by_class, cifar, o)
  local has_image = {}
  for _, s in ipairs(cifar) do
    for _, name in ipairs(s.names) do has_image[name] = true end
  end
  local classes = o.classes
  if not classes then
    local ranked = {}
    for name, clips in pairs(by_class) do
      if has_image[name] and #clips >= o.per_class then ranked[#ranked + 1] = name end
    end
    table.sort(ranked, function(a, b)
      if #by_class[a] ~= #by_class[b] then return #by_class[a] > #by_class[b] end
      return a < b
    end)
    if #ranked < o.n_classes then
      error(("luma: only %d classes have %d utterances in audio/datalist.csv and CIFAR images, "
        .. "%d asked for (lower n_classes or per_class)"):format(#ranked, o.per_class, o.n_classes), 0)
    end
    classes = table.move(ranked, 1, o.n_classes, 1, {})
  end
  classes = table.move(classes, 1, #classes, 1, {})
  table.sort(classes)
  for _, name in ipairs(classes) do
    local count = #(by_class[name] or {})
    if not has_image[name] or count < o.per_class then
      error(("luma: class '%s' has %d utterances (needs %d) and %s"):format(name, count,
        o.per_class, has_image[name] and "CIFAR images" or "no CIFAR images"), 0)
    end
  end
  return classes
end

-- The utterances of each class drawn for the pairs: list (class order) of
-- lists of audio paths, per_class each.
local function draw_utterances(classes, by_class, o)
  local chosen = {}
  for k, name in ipairs(classes) do
    local clips, pick = by_class[name], {}
    local perm = D.permutation(#clips, o.seed, 100 + 2 * k):totable()
    for j = 1, o.per_class do pick[j] = clips[perm[j]] end
    chosen[k] = pick
  end
  return chosen
end

-- The CIFAR images of the classes, uint8 [M, 3, 32, 32], and for each class
-- (in order) the list of its rows in it.
local function gather_images(cifar, classes)
  local index = {}
  for k, name in ipairs(classes) do index[name] = k end
  local parts, rows, total = {}, {}, 0
  for k in ipairs(classes) do rows[k] = {} end
  for _, s in ipairs(cifar) do
    for _, path in ipairs(s.paths) do
      local images, labels = core.io.read_cifar(path, { variant = s.variant })
      local keep = {}
      for i, label in ipairs(labels:totable()) do
        local k = index[s.names[label]]
        if k then
          keep[#keep + 1] = i
          rows[k][#rows[k] + 1] = total + #keep
        end
      end
      if #keep > 0 then
        parts[#parts + 1] = images:index_select(1, core.tensor(keep, { dtype = "int64" }))
        total = total + #keep
      end
    end
  end
  return core.cat(parts, 1), rows
end

-- The decibel mel spectrogram [n_mels, frames] of an audio file.
local function mel_of(path, o)
  local x = core.io.read_audio(path, { mono = true, rate = M.SAMPLE_RATE })
  local len = (o.frames - 1) * M.HOP
  local clip = core.zeros(len)
  local n = math.min(len, x:size(1))
  if n > 0 then clip:narrow(1, 1, n):copy_(x:narrow(1, 1, n)) end
  local mel = signal.mel_spectrogram(clip, { sample_rate = M.SAMPLE_RATE, n_fft = M.N_FFT,
    hop_length = M.HOP, n_mels = o.n_mels })
  return signal.amplitude_to_db(mel, { multiplier = 10, top_db = 80 })
end

-- Build the pairs (called by the cache): class-major, per_class per class.
local function build(classes, utterances, cifar, o, progress)
  local pool, rows = gather_images(cifar, classes)
  local n = #classes * o.per_class
  local audio = core.zeros(n, 1, o.n_mels, o.frames)
  local pick, labels = {}, {}
  for k in ipairs(classes) do
    local perm = D.permutation(#rows[k], o.seed, 101 + 2 * k):totable()
    for j = 1, o.per_class do
      local i = (k - 1) * o.per_class + j
      pick[i] = rows[k][perm[(j - 1) % #perm + 1]]
      labels[i] = k
      audio[i][1]:copy_(mel_of(utterances[k][j], o))
      progress("pairs", i, n)
    end
  end
  local image = core.zeros(n, 3, o.size, o.size, { dtype = "uint8" })
  local chunk = 1024
  for start = 1, n, chunk do
    local len = math.min(chunk, n - start + 1)
    local idx = core.tensor(table.move(pick, start, start + len - 1, 1, {}), { dtype = "int64" })
    image:narrow(1, start, len):copy_(layout.resize(pool:index_select(1, idx), o.size, o.size))
  end
  return { audio = audio, image = image, labels = core.tensor(labels, { dtype = "int64" }) }
end

-- The split sizes: o.train/val/test (counts), or the paper's proportions.
local function split_sizes(o)
  if o.train or o.val or o.test then
    return { train = o.train or 0, val = o.val or 0, test = o.test or 0 }
  end
  local total = M.SPLIT.train + M.SPLIT.val + M.SPLIT.test
  local sizes = {}
  for name, count in pairs(M.SPLIT) do sizes[name] = count / total end
  return sizes
end

--- The data set in folder root as a miles.data.Dataset with splits
-- train/val/test (see the header), and the cache's info {built, path, ...}.
function M.load(root, opts)
  local o = layout.options(M.NAME, opts, M.DEFAULTS)
  root = layout.root(M.NAME, root)
  local csv = root .. "/audio/datalist.csv"
  local by_class = {}
  for _, row in ipairs(layout.read_csv(M.NAME, csv, { "path", "label" })) do
    local list = by_class[row.label] or {}
    list[#list + 1] = row.path:sub(1, 1) == "/" and row.path or root .. "/audio/" .. row.path
    by_class[row.label] = list
  end
  local cifar, files = cifar_sources(root, o)
  local classes = choose_classes(by_class, cifar, o)
  local utterances = draw_utterances(classes, by_class, o)
  files[#files + 1] = csv
  local clips = {}
  for _, list in ipairs(utterances) do table.move(list, 1, #list, #clips + 1, clips) end
  layout.check_all(M.NAME, clips, "the WAV files listed in audio/datalist.csv")
  table.move(clips, 1, #clips, #files + 1, files)
  local params = { seed = o.seed, classes = classes, cifar_names = o.cifar_names,
    per_class = o.per_class, size = o.size,
    n_mels = o.n_mels, frames = o.frames, sample_rate = M.SAMPLE_RATE, n_fft = M.N_FFT,
    hop = M.HOP, version = 1 }
  local arrays, info = layout.cached(M.NAME, root, params, files,
    function(progress) return build(classes, utterances, cifar, o, progress) end, o)
  return data.Dataset({
    modalities = { audio = arrays.audio, image = arrays.image },
    labels = arrays.labels, classes = classes,
    splits = data.random_split(arrays.labels:size(1), split_sizes(o), o.seed),
  }), info
end

return M
