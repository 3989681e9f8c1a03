--- miles.sweep.files: the file and shell helpers of the sweep runner.
--
--   local files = require "miles.sweep.files"
--   files.write_json(dir .. "/result.json", tbl)  -- temporary file + rename
--   local t = files.read_json(dir .. "/result.json")  -- nil when it does not exist
--   files.mkdir(dir); files.exists(path); files.quote("it's") --> 'it'\''s'
--
-- JSON is miles.checkpoint's encoder and decoder (integers stay integers, NaN
-- and infinities round-trip).
local core = require "miles.core"
local checkpoint = require "miles.checkpoint"

local files = {}

--- s quoted for sh.
function files.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Does a file (or folder) exist at path?
function files.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- Create a folder and its parents.
function files.mkdir(path)
  if not os.execute("mkdir -p " .. files.quote(path)) then
    error("sweep: cannot create the folder " .. path, 2)
  end
end

--- The whole content of a file, or nil when it cannot be read.
function files.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- Write text atomically (a temporary file renamed over path).
function files.write(path, text)
  core.write_file_atomic(path, text)
end

--- Append a line to a file (logs that may be read while written).
function files.append(path, line)
  local f = assert(io.open(path, "a"))
  f:write(line, "\n")
  f:close()
end

--- The JSON text of a value (indented, keys sorted).
function files.json(v)
  return checkpoint.json_encode(v) .. "\n"
end

--- Write v as JSON atomically.
function files.write_json(path, v)
  files.write(path, files.json(v))
end

--- The value of a JSON file, or nil when it does not exist; an error naming the
-- file when it is not valid JSON.
function files.read_json(path)
  local s = files.read(path)
  if not s then return nil end
  local ok, v = pcall(checkpoint.json_decode, s)
  if not ok then error(("sweep: %s is not valid JSON: %s"):format(path, v), 2) end
  return v
end

--- The first line printed by a shell command.
function files.capture(cmd)
  local p = assert(io.popen(cmd))
  local line = p:read("l")
  p:close()
  return line
end

--- path made absolute (relative to the current folder).
function files.absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local cwd = files.capture("pwd")
  if path == "." then return cwd end
  return cwd .. "/" .. path:gsub("^%./", "")
end

return files
