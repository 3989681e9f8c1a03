--- miles.data.layout: what the loaders of the paper's data sets (cremad, smnist,
-- luma, mmimdb) share: their options, checking a data set folder with messages
-- that say what is expected where, listing and fingerprinting its files, JSON
-- and CSV, images (to RGB, resized), external commands, and the cache entry of
-- a folder.
--
--   local layout = require "miles.data.layout"
--   local o = layout.options("smnist", opts, DEFAULTS)
--   local root = layout.root("smnist", root)          -- absolute, must be a folder
--   local path = layout.file("smnist", root .. "/labels_train.npy", "the labels")
--   local arrays, info = layout.cached("smnist", root, params, files, builder, o)
--
-- A layout error reads "<dataset>: expected <what> at <path> (see README)".
local fs = require "miles.fs"
local csv = require "miles.csv"
local core = require "miles.core"
local checkpoint = require "miles.checkpoint"
local cache = require "miles.data.cache"

local D = core._data

local layout = {}

--- The options every loader takes, with their defaults.
layout.COMMON = { seed = 0, cache_dir = false, rebuild = false, quiet = false }

--- opts merged over COMMON and defaults; raises at the loader's caller on an
-- option that is neither.
function layout.options(name, opts, defaults)
  if opts ~= nil and type(opts) ~= "table" then
    error(("%s.load: options must be a table, got %s"):format(name, type(opts)), 3)
  end
  local o, known = {}, {}
  for _, t in ipairs({ layout.COMMON, defaults }) do
    for k, v in pairs(t) do o[k], known[#known + 1] = v, k end
  end
  for k, v in pairs(opts or {}) do
    if o[k] == nil then
      table.sort(known)
      error(("%s.load: unknown option '%s' (known: %s)"):format(name, tostring(k),
        table.concat(known, ", ")), 3)
    end
    o[k] = v
  end
  if math.type(o.seed) ~= "integer" then
    error(("%s.load: seed must be an integer, got %s"):format(name, tostring(o.seed)), 3)
  end
  return o
end

--- Raise "<name>: expected <what> at <path> (see README)".
function layout.expected(name, what, path)
  error(("%s: expected %s at %s (see README)"):format(name, what, path), 0)
end

--- The absolute path of a data set's folder (no trailing '/'); raises when it is
-- not a folder.
function layout.root(name, root)
  if type(root) ~= "string" or root == "" then
    error(("%s.load: give the data set's folder, got %s"):format(name, tostring(root)), 3)
  end
  if root:sub(1, 1) ~= "/" then root = (os.getenv("PWD") or ".") .. "/" .. root end
  root = root:gsub("/+$", "")
  if not fs.is_dir(root) then layout.expected(name, "the data set's folder", root) end
  return root
end

--- path, after checking that the file is there (what says what it should be).
function layout.file(name, path, what)
  if not fs.exists(path) then layout.expected(name, what, path) end
  return path
end

--- The sorted names in folder dir that match a Lua pattern; raises when the
-- folder is missing or holds none (what describes them).
function layout.list(name, dir, pattern, what)
  if not fs.is_dir(dir) then layout.expected(name, "a folder of " .. what, dir) end
  local names = {}
  for _, entry in ipairs(D.list_dir(dir)) do
    if entry:match(pattern) then names[#names + 1] = entry end
  end
  if #names == 0 then layout.expected(name, what, dir) end
  table.sort(names)
  return names
end

--- Raise an "expected" error when any of paths is missing, giving the count
-- and the first one (what: e.g. "the video of every clip, VideoFlash/<id>.flv").
function layout.check_all(name, paths, what)
  local missing, first = 0, nil
  for _, p in ipairs(paths) do
    if not fs.exists(p) then
      missing, first = missing + 1, first or p
    end
  end
  if missing > 0 then
    layout.expected(name, ("%s (%d of %d missing, the first)"):format(what, missing, #paths), first)
  end
end

--- The size of a file in bytes.
local function file_size(path)
  local f = assert(io.open(path, "rb"))
  local size = f:seek("end")
  f:close()
  return size
end

--- A checksum of the names and sizes of files: the identity of a data set's
-- source, recorded in its cache entry so that a changed folder is built again.
function layout.fingerprint(paths)
  local lines = {}
  for i, p in ipairs(paths) do lines[i] = p .. "\t" .. file_size(p) end
  return D.checksum_string(table.concat(lines, "\n"))
end

--- The decoded JSON file at path; raises naming the file when it is missing or
-- malformed.
function layout.read_json(name, path, what)
  local text = fs.read(path)
  if not text then layout.expected(name, what, path) end
  local ok, v = pcall(checkpoint.json_decode, text)
  if not ok then
    error(("%s: %s: %s"):format(name, path, (tostring(v):gsub("^checkpoint: ", ""))), 0)
  end
  return v
end

--- The rows of a CSV file with a header line, each a table of column = value;
-- raises when the file is missing, lacks one of the columns, or has a
-- malformed line.
function layout.read_csv(name, path, columns)
  local text = fs.read(path)
  local what = "a CSV file with the columns " .. table.concat(columns, ", ")
  if not text then layout.expected(name, what, path) end
  local ok, records = pcall(csv.parse, text)
  if not ok then error(("%s: %s: %s"):format(name, path, records), 0) end
  if not records[1] then layout.expected(name, what, path) end
  local header, rows = {}, {}
  for k, field in ipairs(records[1]) do header[field] = k end
  for _, c in ipairs(columns) do
    if not header[c] then layout.expected(name, what .. " (no column '" .. c .. "')", path) end
  end
  for r = 2, #records do
    local row = {}
    for c, k in pairs(header) do row[c] = records[r][k] end
    rows[#rows + 1] = row
  end
  return rows
end

--- A PNG or JPEG file as a uint8 [C, H, W] tensor (by its extension).
function layout.read_image(path)
  local ext = path:match("%.(%a+)$")
  ext = ext and ext:lower()
  if ext == "png" then return core.io.read_png(path) end
  if ext == "jpg" or ext == "jpeg" then return core.io.read_jpeg(path) end
  error("read_image: " .. path .. ": not a .png, .jpg or .jpeg file", 2)
end

--- An image [C, H, W] with 3 channels: grey (and grey + alpha) repeated, alpha
-- dropped.
function layout.rgb(img)
  local c = img:size(1)
  if c == 3 then return img end
  if c == 4 then return img:narrow(1, 1, 3) end
  if c == 1 or c == 2 then return img:narrow(1, 1, 1):expand(3, img:size(2), img:size(3)) end
  error(("rgb: an image with %d channels"):format(c), 2)
end

--- An image [C, H, W] or a batch [N, C, H, W] resized to h x w, in its dtype
-- (uint8 rounded): bilinear (align_corners false, as torch's interpolate),
-- after averaging boxes of k x k pixels first when it shrinks by k >= 2 (so
-- that a large poster is not aliased).
function layout.resize(img, h, w)
  local batched = img:dim() == 4
  local x = img:to("float32")
  if not batched then x = x:unsqueeze(1) end
  local H, W = x:size(3), x:size(4)
  local kh, kw = math.max(1, H // h), math.max(1, W // w)
  if kh > 1 or kw > 1 then x = core.adaptive_avg_pool2d(x, { H // kh, W // kw }) end
  if x:size(3) ~= h or x:size(4) ~= w then
    x = core.interpolate(x, { size = { h, w }, mode = "bilinear" })
  end
  if not batched then x = x:squeeze(1) end
  if img:dtype() == "uint8" then return (x:clamp(0, 255) + 0.5):to("uint8") end
  return x:contiguous()
end

--- The bytes of a string as a uint8 tensor (to keep text in the cache).
function layout.string_tensor(s)
  local bytes = {}
  for i = 1, #s, 4096 do
    local chunk = { s:byte(i, math.min(#s, i + 4095)) }
    table.move(chunk, 1, #chunk, #bytes + 1, bytes)
  end
  if #bytes == 0 then return core.zeros(0, { dtype = "uint8" }) end
  return core.tensor(bytes, { dtype = "uint8" })
end

--- The string held by a uint8 tensor from string_tensor.
function layout.tensor_string(t)
  local bytes, parts = t:totable(), {}
  for i = 1, #bytes, 4096 do
    parts[#parts + 1] = string.char(table.unpack(bytes, i, math.min(#bytes, i + 4095)))
  end
  return table.concat(parts)
end

--- Consecutive 1-based indices first .. first + count - 1 (an int64 split).
function layout.range(first, count)
  return core.arange(first, first + count)
end

--- The arrays of data set `name` from folder root, built by builder(progress)
-- into the cache once and memory-mapped after: the entry is <name>-<hash of
-- root>, trusted while params and the fingerprint of `files` (their names and
-- sizes) are unchanged. o: the loader's options (cache_dir, rebuild, quiet).
-- Returns arrays, info (as cache.build).
function layout.cached(name, root, params, files, builder, o)
  local key = name .. "-" .. D.checksum_string(root):sub(7, 18)
  local p = { source = root, files = layout.fingerprint(files) }
  for k, v in pairs(params) do p[k] = v end
  local dir = o.cache_dir or nil
  if o.rebuild then cache.clear(key, { dir = dir }) end
  return cache.build(key, p, builder, { dir = dir, quiet = o.quiet, source = root })
end

return layout
