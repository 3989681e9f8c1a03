--- miles.data: data sets, splits and loaders.
--
--   local data = require "miles.data"
--   local ds = data.Dataset{
--     modalities = { audio = a, image = x },      -- [N, ...] uint8 or float32 each (int64: ids)
--     labels = y,                                 -- int64 [N] (1..C) or float32 [N, K]
--     splits = data.random_split(N, { train = 8000, val = 2000, test = 2000 }, 0),
--     classes = { "cat", "dog", ... },
--   }
--   local loader = ds:loader("train", { batch_size = 64, shuffle = true, seed = 0,
--     workers = 2, prefetch = 4, pin_memory = false,
--     augment = { image = { flip = true, crop = 4 }, audio = { time_shift = 8, noise = 0.01 } },
--     normalize = { image = { scale = 1 / 255, mean = { 0.5 }, std = { 0.25 } } } })
--   for batch in loader:epoch(e) do   -- batch.audio, batch.image, batch.y, batch.index
--     ...
--   end
--
-- Batches are made in C by background threads (a ring of `prefetch` batches kept
-- ready ahead of the loop), so the loop waits only when the data cannot keep up.
-- The order of an epoch and every augmentation depend only on (seed, epoch, sample):
-- the same batches on every machine and for any number of workers. Breaking out of
-- the loop stops the prefetch; collecting or closing the loader stops its threads.
-- pin_memory = true makes each batch's tensors in pinned host memory when there is
-- a GPU (batch.x:is_pinned()): their copies to the GPU are read directly by its copy
-- engine, without a staging copy or a wait (the trainer asks for it on a GPU).
-- Indices are 1-based, as everywhere in miles.
local core = require "miles.core"

local D = core._data

local data = {}

-- Names a batch table uses for itself.
local RESERVED = { y = true, index = true }

-- Raise msg at the caller of the public function (level 3 from a helper).
local function fail(msg, ...)
  error(msg:format(...), 3)
end

-- The keys of t, sorted.
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- Raise unless every key of t is in `known` (what names the table in messages).
local function check_keys(t, known, what)
  for _, k in ipairs(sorted_keys(t)) do
    if not known[k] then
      local names = sorted_keys(known)
      error(("%s: unknown option '%s' (known: %s)"):format(what, tostring(k),
        table.concat(names, ", ")), 4)
    end
  end
end

-- A 1-D int64 tensor of 1-based indices from a tensor or a list, each in [1, n].
local function index_tensor(idx, n, what)
  if type(idx) == "table" and not core.is_tensor(idx) then
    for i, v in ipairs(idx) do
      if math.type(v) ~= "integer" then
        fail("%s: entry %d is %s, not an integer", what, i, tostring(v))
      end
    end
    idx = core.tensor(idx, { dtype = "int64" })
    if idx:dim() == 0 then idx = idx:reshape(0) end
  elseif not core.is_tensor(idx) then
    fail("%s: expected an int64 tensor or a list of indices, got %s", what, type(idx))
  end
  if idx:dtype() ~= "int64" or idx:dim() ~= 1 then
    fail("%s: expected a 1-D int64 tensor of indices, got %s with %d dims", what,
      idx:dtype(), idx:dim())
  end
  if idx:numel() > 0 then
    local bad = idx:lt(1):logical_or(idx:gt(n)):nonzero()
    if bad:size(1) > 0 then
      local pos = bad[1][1]:item()
      fail("%s: index %d (entry %d) is out of range [1, %d]", what, idx[pos]:item(), pos, n)
    end
  end
  return idx:contiguous()
end

-- Check a source array of modality `name` and bring it to uint8 or float32 (int64 ids stay).
local function check_modality(name, t)
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") or RESERVED[name] then
    fail("Dataset: bad modality name '%s' (an identifier other than y and index)", tostring(name))
  end
  if not core.is_tensor(t) then
    fail("Dataset: modality '%s' must be a tensor, got %s", name, type(t))
  end
  if t:dim() < 1 then fail("Dataset: modality '%s' is a scalar; expected [N, ...]", name) end
  if t:device() ~= "cpu" then
    fail("Dataset: modality '%s' is on %s; data sets live on the cpu", name, t:device())
  end
  local dt = t:dtype()
  -- int64 arrays are ids (text tokens): batched as they are, never augmented
  if dt ~= "uint8" and dt ~= "float32" and dt ~= "int64" then t = t:to("float32") end
  return t
end

-- Check the labels against N (and the class names, for class indices).
local function check_labels(y, n, classes)
  if not core.is_tensor(y) then fail("Dataset: labels must be a tensor, got %s", type(y)) end
  if y:dim() < 1 or y:size(1) ~= n then
    fail("Dataset: labels have %d rows but the modalities have %d samples",
      y:dim() < 1 and 0 or y:size(1), n)
  end
  if y:dtype() == "int64" then
    if y:dim() ~= 1 then fail("Dataset: int64 labels must be [N] class indices") end
    if classes and n > 0 then
      local lo, hi = y:min():item(), y:max():item()
      if lo < 1 or hi > #classes then
        fail("Dataset: labels range over [%d, %d] but there are %d classes (1..%d)", lo, hi,
          #classes, #classes)
      end
    end
    return y:contiguous()
  end
  if y:dim() ~= 2 then
    fail("Dataset: labels must be int64 [N] class indices or float32 [N, K] multi-hot, got %s %s",
      y:dtype(), table.concat(y:shape(), "x"))
  end
  if classes and y:size(2) ~= #classes then
    fail("Dataset: multi-hot labels have %d columns but there are %d classes", y:size(2), #classes)
  end
  return y:to("float32"):contiguous()
end

--- A data set: aligned arrays per modality, labels, named splits and class names.
local Dataset = {}
Dataset.__index = Dataset
data.DatasetClass = Dataset

--- data.Dataset{ modalities = {name = tensor, ...}, labels = y, splits = {name =
-- indices, ...}, classes = {...} }: checks that every array has the same number
-- of samples N, that the split indices are in 1..N and the labels in the classes.
-- Sources other than uint8 and float32 are converted to float32 once, here.
-- Without splits, one split "all" covers every sample.
function data.Dataset(spec)
  if type(spec) ~= "table" then fail("Dataset: expected a table, got %s", type(spec)) end
  check_keys(spec, { modalities = true, labels = true, splits = true, classes = true }, "Dataset")
  if type(spec.modalities) ~= "table" or next(spec.modalities) == nil then
    fail("Dataset: modalities must be a table of name = tensor with at least one entry")
  end
  local self = setmetatable({ modalities = {}, splits = {}, names = sorted_keys(spec.modalities) }, Dataset)
  for _, name in ipairs(self.names) do
    local t = check_modality(name, spec.modalities[name])
    if self.n and t:size(1) ~= self.n then
      fail("Dataset: modality '%s' has %d samples but '%s' has %d", name, t:size(1),
        self.names[1], self.n)
    end
    self.n = self.n or t:size(1)
    self.modalities[name] = t
  end
  if spec.classes ~= nil and type(spec.classes) ~= "table" then
    fail("Dataset: classes must be a list of names")
  end
  self.classes = spec.classes
  if spec.labels ~= nil then self.labels = check_labels(spec.labels, self.n, spec.classes) end
  local splits = spec.splits or { all = core.arange(1, self.n + 1) }
  if type(splits) ~= "table" then fail("Dataset: splits must be a table of name = indices") end
  for _, name in ipairs(sorted_keys(splits)) do
    self.splits[name] = index_tensor(splits[name], self.n, "Dataset: split '" .. tostring(name) .. "'")
  end
  return self
end

--- #ds: the number of samples.
function Dataset:__len()
  return self.n
end

function Dataset:__tostring()
  local parts = {}
  for _, name in ipairs(self.names) do
    local t = self.modalities[name]
    parts[#parts + 1] = ("%s %s %s"):format(name, t:dtype(), table.concat(t:shape(), "x"))
  end
  local sp = {}
  for _, name in ipairs(sorted_keys(self.splits)) do
    sp[#sp + 1] = ("%s %d"):format(name, self.splits[name]:numel())
  end
  return ("Dataset(%d samples; %s; splits %s)"):format(self.n, table.concat(parts, ", "),
    table.concat(sp, ", "))
end

--- A subset of a data set: its indices (int64, 1-based) and a loader over them.
local Split = {}
Split.__index = Split
data.SplitClass = Split

--- ds:split(name) -> the named split.
function Dataset:split(name)
  local idx = self.splits[name]
  if not idx then
    fail("Dataset: no split '%s' (splits: %s)", tostring(name),
      table.concat(sorted_keys(self.splits), ", "))
  end
  return setmetatable({ dataset = self, name = name, indices = idx, n = idx:numel() }, Split)
end

function Split:__len()
  return self.n
end

--- The split's labels (index_select of the data set's labels).
function Split:labels()
  return self.dataset.labels and self.dataset.labels:index_select(1, self.indices)
end

--- The split's samples of one modality, as a new tensor.
function Split:tensor(name)
  local t = self.dataset.modalities[name]
  if not t then fail("Split: no modality '%s'", tostring(name)) end
  return t:index_select(1, self.indices)
end

-- Loader options, checked and with defaults.
local LOADER_OPTS = { batch_size = true, shuffle = true, seed = true, drop_last = true,
  workers = true, prefetch = true, pin_memory = true, augment = true, normalize = true,
  _fail_batch = true }
local AUGMENT_OPTS = { flip = true, crop = true, time_shift = true, shift_mode = true, noise = true }
local NORMALIZE_OPTS = { scale = true, mean = true, std = true }

data.DEFAULTS = { batch_size = 64, shuffle = false, seed = 0, drop_last = false, workers = 2,
  prefetch = 4, pin_memory = false }

-- An integer option in [lo, hi].
local function int_opt(o, key, lo, hi, what)
  local v = o[key]
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
    fail("%s: %s must be an integer, got %s", what, key, tostring(v))
  end
  v = math.tointeger(v)
  if v < lo or v > hi then fail("%s: %s must be in [%d, %d], got %d", what, key, lo, hi, v) end
  return v
end

-- A list of numbers (or one number) for mean/std.
local function number_list(v, what)
  if type(v) == "number" then return { v } end
  if type(v) ~= "table" or core.is_tensor(v) then
    fail("%s must be a number or a list of numbers", what)
  end
  for i, x in ipairs(v) do
    if type(x) ~= "number" then fail("%s[%d] must be a number", what, i) end
  end
  return v
end

-- The C loader's source entry of one modality, from its augment/normalize options.
local function source_spec(name, t, aug, norm)
  local s = { name = name, tensor = t }
  local what = "loader: augment." .. name
  if aug then
    if type(aug) ~= "table" then fail("%s must be a table", what) end
    check_keys(aug, AUGMENT_OPTS, what)
    if aug.flip ~= nil and type(aug.flip) ~= "boolean" then fail("%s.flip must be a boolean", what) end
    s.flip = aug.flip
    if aug.crop ~= nil then s.crop = int_opt(aug, "crop", 0, 1 << 20, what) end
    if aug.time_shift ~= nil then s.time_shift = int_opt(aug, "time_shift", 0, 1 << 30, what) end
    if aug.shift_mode ~= nil and aug.shift_mode ~= "circular" and aug.shift_mode ~= "zero" then
      fail("%s.shift_mode must be 'circular' or 'zero', got %s", what, tostring(aug.shift_mode))
    end
    s.shift_zero = aug.shift_mode == "zero"
    if aug.noise ~= nil and (type(aug.noise) ~= "number" or aug.noise < 0) then
      fail("%s.noise must be a number >= 0", what)
    end
    s.noise = aug.noise
    if s.crop and s.crop > 0 and t:dim() < 3 then
      fail("%s.crop needs samples with height and width ([N, ..., H, W]), got %s", what,
        table.concat(t:shape(), "x"))
    end
  end
  if norm then
    what = "loader: normalize." .. name
    if type(norm) ~= "table" then fail("%s must be a table", what) end
    check_keys(norm, NORMALIZE_OPTS, what)
    if norm.scale ~= nil and type(norm.scale) ~= "number" then fail("%s.scale must be a number", what) end
    s.scale = norm.scale
    s.mean = norm.mean ~= nil and number_list(norm.mean, what .. ".mean") or nil
    s.std = norm.std ~= nil and number_list(norm.std, what .. ".std") or nil
    local channels = t:dim() >= 4 and t:size(2) or 1
    for _, key in ipairs({ "mean", "std" }) do
      local list = s[key]
      if list and #list ~= 1 and #list ~= channels then
        fail("%s.%s has %d values but the samples have %d channels", what, key, #list, channels)
      end
    end
    for i, v in ipairs(s.std or {}) do
      if not (v > 0) then fail("%s.std[%d] must be > 0, got %s", what, i, tostring(v)) end
    end
  end
  return s
end

-- Raise if a per-modality option table names a modality the data set lacks.
local function check_modality_names(ds, t, what)
  if t == nil then return end
  if type(t) ~= "table" then fail("loader: %s must be a table of modality = options", what) end
  for _, name in ipairs(sorted_keys(t)) do
    if not ds.modalities[name] then
      fail("loader: %s.%s: no such modality (modalities: %s)", what, tostring(name),
        table.concat(ds.names, ", "))
    end
  end
end

--- The loader object: an epoch iterator over batches of one split.
local Loader = {}
Loader.__index = Loader
data.LoaderClass = Loader

--- split:loader(opts) -> a loader over the split (options as ds:loader).
function Split:loader(opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("loader: options must be a table") end
  check_keys(opts, LOADER_OPTS, "loader")
  local o = {}
  for k, v in pairs(data.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  local ds = self.dataset
  check_modality_names(ds, o.augment, "augment")
  check_modality_names(ds, o.normalize, "normalize")
  local spec = {
    batch_size = int_opt(o, "batch_size", 1, 1 << 40, "loader"),
    seed = int_opt(o, "seed", math.mininteger, math.maxinteger, "loader"),
    workers = int_opt(o, "workers", 0, 64, "loader"),
    prefetch = int_opt(o, "prefetch", 1, 1024, "loader"),
    indices = self.indices, labels = ds.labels, sources = {},
  }
  for _, key in ipairs({ "shuffle", "drop_last", "pin_memory" }) do
    if type(o[key]) ~= "boolean" then fail("loader: %s must be a boolean, got %s", key, tostring(o[key])) end
    spec[key] = o[key]
  end
  if o._fail_batch ~= nil then spec.fail_batch = o._fail_batch end
  for _, name in ipairs(ds.names) do
    spec.sources[#spec.sources + 1] = source_spec(name, ds.modalities[name],
      o.augment and o.augment[name], o.normalize and o.normalize[name])
  end
  local self_ = setmetatable({ _c = D.loader(spec), _gen = 0, split = self.name,
    batch_size = spec.batch_size, shuffle = spec.shuffle, drop_last = spec.drop_last,
    seed = spec.seed, workers = spec.workers, prefetch = spec.prefetch,
    size = self.n, modalities = ds.names }, Loader)
  return self_
end

--- ds:loader(split, opts) -> a loader over a split given by name, Split or indices.
function Dataset:loader(split, opts)
  if type(split) == "string" then
    split = self:split(split)
  elseif getmetatable(split) ~= Split then
    local idx = index_tensor(split, self.n, "loader: indices")
    split = setmetatable({ dataset = self, name = "custom", indices = idx, n = idx:numel() }, Split)
  end
  return split:loader(opts)
end

--- #loader: batches per epoch.
function Loader:__len()
  return #self._c
end

function Loader:__tostring()
  return ("Loader(split %s, %d samples, %d batches of %d%s)"):format(tostring(self.split),
    self.size, #self._c, self.batch_size, self.shuffle and ", shuffled" or "")
end

--- for batch in loader:epoch(e) do ... end: the batches of epoch e (default: the
-- epoch after the last one asked for, starting at 1). Leaving the loop early
-- (break, error) stops the prefetch of the rest of the epoch.
function Loader:epoch(e)
  if e == nil then e = (self.current_epoch or 0) + 1 end
  if math.type(e) ~= "integer" then fail("loader:epoch: the epoch must be an integer, got %s", tostring(e)) end
  local c = self._c
  c:reset(e)
  self.current_epoch = e
  self._gen = self._gen + 1
  local gen = self._gen
  local closer = setmetatable({}, { __close = function()
    if self._gen == gen and not c.closed then c:stop() end
  end })
  return function() return c:next() end, nil, nil, closer
end

--- Start epoch e without a loop (then call loader:next()).
function Loader:reset(e)
  self._c:reset(e)
  self.current_epoch = e
  self._gen = self._gen + 1
end

--- The next batch of the current epoch, or nil at its end.
function Loader:next()
  return self._c:next()
end

--- {batches=, waits=, wait_seconds=}: how often the consumer waited for data.
function Loader:stats()
  return self._c:stats()
end

--- Stop and join the worker threads now (also done when the loader is collected).
function Loader:close()
  self._c:close()
end
Loader.__close = Loader.close

--- Is the loader closed?
function Loader:closed()
  return self._c.closed
end

-- --- splits ---

-- The sizes table as a list of {name, fraction-or-count} sorted by name.
local function size_list(sizes, what)
  if type(sizes) ~= "table" or next(sizes) == nil then
    fail("%s: sizes must be a table of name = count (or fraction)", what)
  end
  local list = {}
  for _, name in ipairs(sorted_keys(sizes)) do
    local v = sizes[name]
    if type(name) ~= "string" then fail("%s: split names must be strings", what) end
    if type(v) ~= "number" or v < 0 or v ~= v then
      fail("%s: size of '%s' must be a number >= 0, got %s", what, name, tostring(v))
    end
    list[#list + 1] = { name, v }
  end
  return list
end

-- Counts that add up to `total` from weights w (largest remainders, ties by order).
local function apportion(weights, n, total)
  local counts, rems, sum = {}, {}, 0
  for i, w in ipairs(weights) do
    local exact = w * n
    counts[i] = math.floor(exact + 1e-9)
    rems[i] = { exact - counts[i], i }
    sum = sum + counts[i]
  end
  table.sort(rems, function(a, b)
    if a[1] ~= b[1] then return a[1] > b[1] end
    return a[2] < b[2]
  end)
  for k = 1, math.max(0, total - sum) do
    local i = rems[(k - 1) % #rems + 1][2]
    counts[i] = counts[i] + 1
  end
  return counts
end

-- A sorted int64 tensor of the values list[first..last].
local function sorted_slice(list, first, last)
  local out = table.move(list, first, last, 1, {})
  table.sort(out)
  return #out > 0 and core.tensor(out, { dtype = "int64" }) or core.zeros(0, { dtype = "int64" })
end

--- data.random_split(n, sizes, seed) -> {name = int64 indices (sorted, 1-based)}:
-- a deterministic partition of a random permutation of 1..n. sizes: name = count
-- (integers), or name = fraction (floats; counts rounded so that fractions
-- summing to 1 use every sample). Names take their parts in sorted order.
function data.random_split(n, sizes, seed)
  if math.type(n) ~= "integer" or n < 0 then fail("random_split: n must be an integer >= 0") end
  seed = seed or 0
  if math.type(seed) ~= "integer" then fail("random_split: seed must be an integer") end
  local list = size_list(sizes, "random_split")
  local fractions = false
  for _, e in ipairs(list) do fractions = fractions or math.type(e[2]) == "float" end
  local weights, counts, sum = {}, {}, 0
  for i, e in ipairs(list) do
    weights[i] = e[2]
    sum = sum + e[2]
  end
  if fractions then
    if sum > 1 + 1e-9 then fail("random_split: fractions add up to %g, more than 1", sum) end
    counts = apportion(weights, n, math.floor(sum * n + 0.5))
  else
    if sum > n then fail("random_split: sizes add up to %d, more than the %d samples", sum, n) end
    counts = weights
  end
  local perm = D.permutation(n, seed, 1):totable()
  local out, at = {}, 0
  for i, e in ipairs(list) do
    out[e[1]] = sorted_slice(perm, at + 1, at + counts[i])
    at = at + counts[i]
  end
  return out
end

--- data.stratified_split(labels, fractions, seed) -> {name = int64 indices}: each
-- class split in the given fractions (rounded per class by largest remainders), so
-- every split has the classes in the same proportions. labels: int64 [N] classes.
function data.stratified_split(labels, fractions, seed)
  if core.is_tensor(labels) then
    if labels:dtype() ~= "int64" or labels:dim() ~= 1 then
      fail("stratified_split: labels must be int64 [N] class indices, got %s with %d dims",
        labels:dtype(), labels:dim())
    end
    labels = labels:totable()
  elseif type(labels) ~= "table" then
    fail("stratified_split: labels must be an int64 tensor or a list")
  end
  seed = seed or 0
  if math.type(seed) ~= "integer" then fail("stratified_split: seed must be an integer") end
  local list = size_list(fractions, "stratified_split")
  local weights, sum = {}, 0
  for i, e in ipairs(list) do
    weights[i] = e[2]
    sum = sum + e[2]
  end
  if sum > 1 + 1e-9 then fail("stratified_split: fractions add up to %g, more than 1", sum) end
  local by_class, class_list = {}, {}
  for _, i in ipairs(D.permutation(#labels, seed, 2):totable()) do
    local c = labels[i]
    if not by_class[c] then
      by_class[c] = {}
      class_list[#class_list + 1] = c
    end
    local members = by_class[c]
    members[#members + 1] = i
  end
  table.sort(class_list)
  local parts = {}
  for k in ipairs(list) do parts[k] = {} end
  for _, c in ipairs(class_list) do
    local members = by_class[c]
    local counts = apportion(weights, #members, math.floor(sum * #members + 0.5))
    local at = 0
    for k, count in ipairs(counts) do
      table.move(members, at + 1, at + count, #parts[k] + 1, parts[k])
      at = at + count
    end
  end
  local out = {}
  for k, e in ipairs(list) do out[e[1]] = sorted_slice(parts[k], 1, #parts[k]) end
  return out
end

return data
