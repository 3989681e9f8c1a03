--- miles.fs: the small file and shell helpers the Lua library shares (data set
-- loaders, the cache, the sweep runner, experiments).
--
--   local fs = require "miles.fs"
--   fs.exists(path); fs.is_dir(path); fs.mkdir(dir)       -- with its parents
--   local text = fs.read(path)                             -- nil when unreadable
--   fs.write(path, text)                                   -- temporary file + rename
--   fs.quote("it's") --> 'it'\''s'                         -- for sh
--   fs.with_tmpdir(function(dir) ... end)                  -- removed afterwards
local core = require "miles.core"

local D = core._data

local fs = {}

--- s quoted for a POSIX shell.
function fs.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Does a file (or folder) exist at path, and can it be opened?
function fs.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- Is path a folder that can be listed?
function fs.is_dir(path)
  return (pcall(D.list_dir, path))
end

--- Create a folder and its parents (raises naming the folder when it cannot).
function fs.mkdir(path)
  local ok, err = pcall(D.mkdir_p, path)
  if not ok then error(("cannot create the folder %s: %s"):format(path, tostring(err)), 2) end
end

--- The whole content of a file, or nil when it cannot be read.
function fs.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- Write text to path atomically (a temporary file, fsync, rename).
function fs.write(path, text)
  core.write_file_atomic(path, text)
end

--- The first line a shell command prints.
function fs.capture(cmd)
  local p = assert(io.popen(cmd))
  local line = p:read("l")
  p:close()
  return line
end

--- Is the command on the PATH?
function fs.have(command)
  return os.execute("command -v " .. fs.quote(command) .. " >/dev/null 2>&1") == true
end

--- path made absolute (relative to the current folder).
function fs.absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local cwd = fs.capture("pwd")
  if path == "." then return cwd end
  return cwd .. "/" .. path:gsub("^%./", "")
end

--- Run fn(dir) with a fresh temporary folder, removed afterwards (also on error).
function fs.with_tmpdir(fn)
  local dir = os.tmpname()
  os.remove(dir)
  D.mkdir_p(dir)
  local ok, res = pcall(fn, dir)
  D.remove_tree(dir)
  if not ok then error(res, 0) end
  return res
end

return fs
