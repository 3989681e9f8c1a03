--- miles.log: one row per epoch to CSV and JSONL, and a summary.json.
--
--   local log = require("miles.log").Logger(dir, columns)
--   log:row({epoch = 1, val_accuracy_fused = 0.9, action = "slow_1", ...})
--   log:summary(tbl)
-- Files: dir/log.csv (header = columns; NaN and missing values empty),
-- dir/log.jsonl (one JSON object per row, columns in order; NaN/inf/missing -> null),
-- dir/summary.json. Rows are appended as they come; the CSV and JSONL files are
-- rewritten whole (atomically) on every row, so a resumed run that starts a new
-- Logger with the earlier rows (log:replay(rows)) leaves consistent files.
local core = require "miles.core"

local log = {}

local function json_string(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
    return named[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local function json_number(x)
  if math.type(x) == "integer" then return tostring(x) end
  if x ~= x or x == math.huge or x == -math.huge then return "null" end
  local s = ("%.17g"):format(x)
  if tonumber(("%.15g"):format(x)) == x then s = ("%.15g"):format(x) end
  return s
end

--- JSON text of a Lua value (NaN and infinities as null; tables with keys 1..n as
-- arrays, others as objects with sorted keys). Compact unless indent is given.
function log.json(v, indent, depth)
  depth = depth or 0
  local t = type(v)
  if v == nil then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then return json_number(v) end
  if t == "string" then return json_string(v) end
  if t ~= "table" then return json_string(tostring(v)) end
  local nl = indent and ("\n" .. (" "):rep(indent * (depth + 1))) or ""
  local close = indent and ("\n" .. (" "):rep(indent * depth)) or ""
  local sep = indent and ": " or ":"
  local n = #v
  local count = 0
  for _ in pairs(v) do count = count + 1 end
  local parts = {}
  if n > 0 and n == count then
    for i = 1, n do parts[i] = nl .. log.json(v[i], indent, depth + 1) end
    return "[" .. table.concat(parts, ",") .. close .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for i, k in ipairs(keys) do
    local val = v[k]
    if val == nil then val = v[tonumber(k)] end
    parts[i] = nl .. json_string(k) .. sep .. log.json(val, indent, depth + 1)
  end
  if #parts == 0 then return "{}" end
  return "{" .. table.concat(parts, ",") .. close .. "}"
end

local function csv_cell(v)
  if v == nil then return "" end
  if type(v) == "number" then
    if v ~= v then return "" end
    if math.type(v) == "integer" then return tostring(v) end
    return ("%.10g"):format(v)
  end
  local s = tostring(v)
  if s:find('[,"\n\r]') then s = '"' .. s:gsub('"', '""') .. '"' end
  return s
end

local function json_row(row, columns)
  local parts = {}
  for i, c in ipairs(columns) do parts[i] = json_string(c) .. ":" .. log.json(row[c]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

local Logger = {}
Logger.__index = Logger

--- log.Logger(dir, columns): a logger writing into dir (created if missing).
function log.Logger(dir, columns)
  assert(type(dir) == "string", "log.Logger: give the directory")
  os.execute(("mkdir -p '%s'"):format(dir:gsub("'", "'\\''")))
  return setmetatable({ dir = dir, columns = columns, rows = {} }, Logger)
end

function Logger:_write()
  local csv = { table.concat(self.columns, ",") }
  local jsonl = {}
  for i, row in ipairs(self.rows) do
    local cells = {}
    for j, c in ipairs(self.columns) do cells[j] = csv_cell(row[c]) end
    csv[i + 1] = table.concat(cells, ",")
    jsonl[i] = json_row(row, self.columns)
  end
  core.write_file_atomic(self.dir .. "/log.csv", table.concat(csv, "\n") .. "\n")
  core.write_file_atomic(self.dir .. "/log.jsonl", #jsonl > 0 and (table.concat(jsonl, "\n") .. "\n") or "")
end

--- Append one row (a table column -> value) and rewrite the files.
function Logger:row(row)
  self.rows[#self.rows + 1] = row
  self:_write()
end

--- Replace the rows (after a resume) and rewrite the files.
function Logger:replay(rows)
  self.rows = {}
  for i, r in ipairs(rows) do self.rows[i] = r end
  self:_write()
end

--- Write dir/summary.json.
function Logger:summary(tbl)
  core.write_file_atomic(self.dir .. "/summary.json", log.json(tbl, 2) .. "\n")
end

log.csv_cell = csv_cell
return log
