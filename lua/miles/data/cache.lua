--- miles.data.cache: each data set preprocessed once into NPY arrays on disk, then
-- memory-mapped on every later run.
--
--   local cache = require "miles.data.cache"
--   local arrays = cache.build("spoken-fashion-easy-0", params, function(progress)
--     ... progress("clips", done, total) ...
--     return { audio = a, image = x, labels = y }       -- CPU tensors
--   end)
--   -- arrays.audio, arrays.image, arrays.labels: memory-mapped (copy-on-write)
--
-- Layout: <cache.dir()>/<name>/ holds one <key>.npy per array and manifest.json
-- (format, name, source, params, each file's size, dtype, shape and XXH64
-- checksum, the creation time and the miles version). A cache is trusted only when
-- its manifest records the same params and every file has its recorded size and
-- checksum; otherwise it is built again.
--
-- A build writes into <name>.tmp.<pid>, fsyncs the arrays, writes the manifest
-- last, fsyncs the directory and renames it into place, so a build that is
-- interrupted (an error, a crash, SIGKILL) never leaves a directory that a later
-- run trusts. Temporary directories of processes that no longer run are removed
-- by the next build.
local core = require "miles.core"
local checkpoint = require "miles.checkpoint"
local progress = require "miles.progress"
local fs = require "miles.fs"

local D = core._data

local cache = {}

cache.FORMAT = "miles-cache"
cache.VERSION = 1

--- The cache's root: $MILES_CACHE, else $XDG_CACHE_HOME/miles, else ~/.cache/miles.
function cache.dir()
  local d = os.getenv("MILES_CACHE")
  if d and d ~= "" then return d end
  local xdg = os.getenv("XDG_CACHE_HOME")
  if xdg and xdg ~= "" then return xdg .. "/miles" end
  local home = os.getenv("HOME")
  if not home or home == "" then
    error("cache: no cache directory: set MILES_CACHE (HOME is not set)", 2)
  end
  return home .. "/.cache/miles"
end

-- Raise unless name is a plain directory name.
local function check_name(name, what)
  if type(name) ~= "string" or not name:match("^[%w][%w_%-%.]*$") or name:find("..", 1, true)
    or name:find("%.tmp%.") or name:find("%.old%.") then
    error(("%s: bad cache name '%s' (letters, digits, '_', '-', '.')"):format(what, tostring(name)), 3)
  end
end

--- The directory of a cache entry.
function cache.path(name, opts)
  check_name(name, "cache.path")
  return ((opts and opts.dir) or cache.dir()) .. "/" .. name
end

-- The canonical JSON text of params (sorted keys), which the manifest records.
local function params_key(params, what)
  if params ~= nil and type(params) ~= "table" then
    error(("%s: params must be a table, got %s"):format(what, type(params)), 3)
  end
  local ok, text = pcall(checkpoint.json_encode, params or {})
  if not ok then error(("%s: params: %s"):format(what, text), 3) end
  return text
end

-- Check a manifest's files against the disk; returns the arrays or nil, reason.
local function open_files(root, m, verify)
  if type(m.files) ~= "table" then return nil, "manifest has no file list" end
  local arrays = {}
  for key, f in pairs(m.files) do
    if type(f) ~= "table" or type(f.file) ~= "string" or not f.file:match("^[%w_%-%.]+$") then
      return nil, "manifest entry '" .. tostring(key) .. "' is malformed"
    end
    local path = root .. "/" .. f.file
    local ok, sum, size = pcall(core.checksum_file, path)
    if not ok then return nil, f.file .. " is missing" end
    if size ~= f.bytes then
      return nil, ("%s has %d bytes, the manifest says %s"):format(f.file, size, tostring(f.bytes))
    end
    if verify and sum ~= f.checksum then return nil, f.file .. " does not match its checksum" end
    local okm, t = pcall(core.load_mmap, path)
    if not okm then return nil, tostring(t) end
    arrays[key] = t
  end
  return arrays
end

--- cache.open(name, params [, opts]) -> arrays, manifest; or nil, reason: the
-- entry's arrays (memory-mapped) when its manifest records these params and its
-- files match their checksums (opts.verify = false checks only their sizes).
function cache.open(name, params, opts)
  opts = opts or {}
  check_name(name, "cache.open")
  local key = params_key(params, "cache.open")
  local root = (opts.dir or cache.dir()) .. "/" .. name
  local text = fs.read(root .. "/manifest.json")
  if not text then return nil, "not built yet" end
  local ok, m = pcall(checkpoint.json_decode, text)
  if not ok or type(m) ~= "table" then return nil, "the manifest is unreadable" end
  if m.format ~= cache.FORMAT or m.version ~= cache.VERSION then
    return nil, "the manifest's format is not " .. cache.FORMAT .. " " .. cache.VERSION
  end
  if m.params_key ~= key then return nil, "the parameters changed" end
  local arrays, why = open_files(root, m, opts.verify ~= false)
  if not arrays then return nil, why end
  return arrays, m
end

-- A Lua pattern matching s literally.
local function literal(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

-- Remove the temporary and old directories of name that belong to processes that
-- no longer run (or to this one).
local function remove_stale(dir, name)
  local ok, entries = pcall(D.list_dir, dir)
  if not ok then return end
  local me = D.getpid()
  local prefix = "^" .. literal(name) .. "%.(%a+)%.(%d+)$"
  for _, entry in ipairs(entries) do
    local kind, pid = entry:match(prefix)
    pid = tonumber(pid)
    if (kind == "tmp" or kind == "old") and (pid == me or not D.pid_alive(pid)) then
      D.remove_tree(dir .. "/" .. entry)
    end
  end
end

-- Check the builder's result: a table of key = CPU tensor, keys usable as file names.
local function check_result(result, name)
  if type(result) ~= "table" then
    error(("cache.build: %s: the builder returned %s, expected a table of tensors"):format(name,
      type(result)), 0)
  end
  local keys = {}
  for k, t in pairs(result) do
    if type(k) ~= "string" or not k:match("^[%a_][%w_%-]*$") then
      error(("cache.build: %s: bad array name '%s'"):format(name, tostring(k)), 0)
    end
    if not core.is_tensor(t) then
      error(("cache.build: %s: '%s' is a %s, expected a tensor"):format(name, k, type(t)), 0)
    end
    if t:device() ~= "cpu" then
      error(("cache.build: %s: '%s' is on %s; move it to the cpu"):format(name, k, t:device()), 0)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  return keys
end

-- Run the builder and write its arrays and the manifest (last) into tmp.
local function build_into(tmp, name, params, key, builder, opts)
  local hook = opts.hook or function() end
  local tracker = progress.tracker({ quiet = opts.quiet, stream = opts.stream })
  local result = builder(tracker)
  tracker.finish()
  hook("built", tmp)
  local files = {}
  for _, k in ipairs(check_result(result, name)) do
    local t, file = result[k], k .. ".npy"
    core.save(tmp .. "/" .. file, t)
    local sum, size = core.checksum_file(tmp .. "/" .. file)
    files[k] = { file = file, bytes = size, checksum = sum, dtype = t:dtype(), shape = t:shape() }
  end
  hook("written", tmp)
  local manifest = {
    format = cache.FORMAT, version = cache.VERSION, name = name,
    source = opts.source or (type(params) == "table" and params.source) or name,
    params = params or {}, params_key = key, files = files,
    created = os.date("!%Y-%m-%dT%H:%M:%SZ"), miles_version = core.version,
  }
  core.write_file_atomic(tmp .. "/manifest.json", checkpoint.json_encode(manifest) .. "\n")
  D.fsync(tmp)
  hook("manifest", tmp)
end

-- Rename tmp into place as root (moving an old root aside first: a directory
-- cannot be renamed over a non-empty one), then flush the parent directory.
local function install(tmp, root, dir, hook)
  local old = ("%s.old.%d"):format(root, D.getpid())
  D.remove_tree(old)
  local moved, msg, code = os.rename(root, old)
  if not moved and code ~= 2 then -- ENOENT: nothing to move aside
    error("cache.build: cannot move the old cache aside: " .. tostring(msg), 0)
  end
  local ok = os.rename(tmp, root)
  if not ok then
    -- Another process installed the same entry meanwhile: keep its copy.
    D.remove_tree(tmp)
  end
  D.fsync(dir)
  D.remove_tree(old)
  if hook then hook("renamed", root) end
end

-- Write a line about the cache on stderr (unless quiet).
local function note(opts, msg)
  if opts.quiet or os.getenv("MILES_PROGRESS") == "0" then return end
  local stream = opts.stream or io.stderr
  stream:write(msg, "\n")
  stream:flush()
end

--- cache.build(name, params, builder [, opts]) -> arrays, info: the arrays of a
-- cache entry, memory-mapped; built first by builder(progress) when the entry is
-- missing, was built with other params, or fails its checksums. builder returns a
-- table of name = CPU tensor; progress(label, done, total) draws a progress bar.
-- info = {built = bool, reason = why it was built, path = the entry's directory,
-- manifest = its manifest}. opts: dir (instead of cache.dir()), verify (false:
-- check sizes only), quiet, stream (for the bars and notes), source (recorded in
-- the manifest), hook (tests: called with each stage of a build).
function cache.build(name, params, builder, opts)
  opts = opts or {}
  check_name(name, "cache.build")
  if type(builder) ~= "function" and not (getmetatable(builder) or {}).__call then
    error("cache.build: builder must be a function", 2)
  end
  local key = params_key(params, "cache.build")
  local dir = opts.dir or cache.dir()
  local root = dir .. "/" .. name
  local arrays, m = cache.open(name, params, opts)
  if arrays then return arrays, { built = false, path = root, manifest = m } end
  local reason = m
  note(opts, ("cache: building %s (%s) in %s"):format(name, reason, root))
  D.mkdir_p(dir)
  remove_stale(dir, name)
  local tmp = ("%s.tmp.%d"):format(root, D.getpid())
  D.remove_tree(tmp)
  D.mkdir_p(tmp)
  local ok, err = pcall(build_into, tmp, name, params, key, builder, opts)
  if not ok then
    D.remove_tree(tmp)
    error(("cache.build: %s: the build failed: %s"):format(name, tostring(err)), 0)
  end
  install(tmp, root, dir, opts.hook)
  local out, m2 = cache.open(name, params, { dir = dir, verify = false })
  if not out then
    error(("cache.build: %s: the new entry cannot be read back (%s)"):format(name, m2), 0)
  end
  return out, { built = true, reason = reason, path = root, manifest = m2 }
end

--- Remove a cache entry (and its leftovers of dead processes).
function cache.clear(name, opts)
  check_name(name, "cache.clear")
  local dir = (opts and opts.dir) or cache.dir()
  D.remove_tree(dir .. "/" .. name)
  remove_stale(dir, name)
end

return cache
