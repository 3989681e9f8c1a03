--- S-MNIST (Khacef et al., the zenodo release) from its NPY files, as in the
-- MILES paper: MNIST digits paired with spoken digits, both as 28 x 28 images.
--
--   local smnist = require "miles.data.smnist"
--   local ds, info = smnist.load("/data/smnist", { seed = 0 })
--   -- ds.modalities.image [N, 1, 28, 28] (uint8 when the file is uint8, else
--   -- float32), ds.modalities.audio float32 [N, 1, 28, 28], ds.labels int64
--   -- 1..10 (digits 0..9), splits train/val/test
--
-- Layout: <root>/data_wr_{train,test}.npy (N x 784 MNIST pixels),
-- data_sp_{train,test}.npy (N x 507 = 39 frames x 13 MFCC, row-major),
-- labels_{train,test}.npy (N digits 0..9).
--
-- Image: each row reshaped to 28 x 28. Audio: each row reshaped to 39 x 13 and
-- resized to 28 x 28 (bilinear, align_corners false). Splits: train (8000) and
-- val (2000) drawn from the training files, test (2000) from the test files,
-- with the seed; the data set holds every row of both files (the cache is the
-- same for every seed and size; only the splits change).
--
-- Options: seed (0), train (8000), val (2000), test (2000), cache_dir,
-- rebuild, quiet.
local core = require "miles.core"
local data = require "miles.data"
local layout = require "miles.data.layout"

local M = {}

M.NAME = "smnist"
M.CLASSES = { "0", "1", "2", "3", "4", "5", "6", "7", "8", "9" }
M.DEFAULTS = { train = 8000, val = 2000, test = 2000 }

-- What each file holds, for the messages.
local FILES = {
  { "data_wr", "MNIST pixels, N x 784" },
  { "data_sp", "MFCC features, N x 507 (39 x 13)" },
  { "labels", "digit labels 0..9, N" },
}

-- The paths of the files of one part ("train" or "test"), checked.
local function paths_of(root, part)
  local out = {}
  for _, f in ipairs(FILES) do
    local file = ("%s_%s.npy"):format(f[1], part)
    out[f[1]] = layout.file(M.NAME, root .. "/" .. file, ("%s (%s)"):format(file, f[2]))
  end
  return out
end

-- The arrays of one part, checked against each other: image, audio, labels.
local function read_part(paths)
  local wr, sp, y = core.load(paths.data_wr), core.load(paths.data_sp), core.load(paths.labels)
  local n = wr:size(1)
  local function check(t, path, cols)
    local rows_ok = t:dim() >= 1 and t:size(1) == n
    local cols_ok = cols == nil and t:numel() == n or (t:dim() == 2 and t:size(2) == cols)
    if not (rows_ok and cols_ok) then
      error(("smnist: %s has shape [%s], expected [%d%s]"):format(path,
        table.concat(t:shape(), ", "), n, cols and (", " .. cols) or ""), 0)
    end
  end
  check(wr, paths.data_wr, 784)
  check(sp, paths.data_sp, 507)
  check(y, paths.labels)
  y = y:reshape(n):to("int64") + 1
  if n > 0 and (y:min():item() < 1 or y:max():item() > 10) then
    error(("smnist: %s holds labels outside 0..9"):format(paths.labels), 0)
  end
  if wr:dtype() ~= "uint8" then wr = wr:to("float32") end
  local audio = layout.resize(sp:to("float32"):reshape(n, 1, 39, 13), 28, 28)
  return wr:reshape(n, 1, 28, 28), audio, y
end

-- Build the arrays: the training rows, then the test rows.
local function build(train, test, progress)
  local x1, a1, y1 = read_part(train)
  progress("files", 1, 2)
  local x2, a2, y2 = read_part(test)
  progress("files", 2, 2)
  local image = core.cat({ x1, x2:to(x1:dtype()) }, 1)
  return { image = image:contiguous(), audio = core.cat({ a1, a2 }, 1),
    labels = core.cat({ y1, y2 }, 1), n_train = core.tensor({ x1:size(1) }, { dtype = "int64" }) }
end

--- The data set in folder root as a miles.data.Dataset with splits
-- train/val/test (see the header), and the cache's info {built, path, ...}.
function M.load(root, opts)
  local o = layout.options(M.NAME, opts, M.DEFAULTS)
  root = layout.root(M.NAME, root)
  local train, test = paths_of(root, "train"), paths_of(root, "test")
  local files = {}
  for _, p in ipairs({ train, test }) do
    for _, f in ipairs(FILES) do files[#files + 1] = p[f[1]] end
  end
  local arrays, info = layout.cached(M.NAME, root, { version = 1 }, files,
    function(progress) return build(train, test, progress) end, o)
  local n_train = arrays.n_train[1]:item()
  local n_test = arrays.labels:size(1) - n_train
  if o.train + o.val > n_train or o.test > n_test then
    error(("smnist: asks for %d+%d training and %d test samples, the files have %d and %d "
      .. "(pass smaller train/val/test)"):format(o.train, o.val, o.test, n_train, n_test), 2)
  end
  local fit = data.random_split(n_train, { train = o.train, val = o.val }, o.seed)
  local test_idx = data.random_split(n_test, { test = o.test }, o.seed).test + n_train
  return data.Dataset({
    modalities = { audio = arrays.audio, image = arrays.image },
    labels = arrays.labels, classes = M.CLASSES,
    splits = { train = fit.train, val = fit.val, test = test_idx },
  }), info
end

return M
