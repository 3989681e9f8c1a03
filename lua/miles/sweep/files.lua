--- miles.sweep.files: the JSON files of the sweep runner (the rest is miles.fs).
--
--   local files = require "miles.sweep.files"
--   files.write_json(dir .. "/result.json", tbl)  -- temporary file + rename
--   local t = files.read_json(dir .. "/result.json")  -- nil when it does not exist
--
-- JSON is miles.checkpoint's encoder and decoder (integers stay integers, NaN
-- and infinities round-trip).
local fs = require "miles.fs"
local checkpoint = require "miles.checkpoint"

local files = {}

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
  fs.write(path, files.json(v))
end

--- The value of a JSON file, or nil when it does not exist; an error naming the
-- file when it is not valid JSON.
function files.read_json(path)
  local s = fs.read(path)
  if not s then return nil end
  local ok, v = pcall(checkpoint.json_decode, s)
  if not ok then error(("sweep: %s is not valid JSON: %s"):format(path, v), 2) end
  return v
end

return files
