--- miles.csv: reading CSV text (RFC 4180: fields in double quotes may hold commas,
-- newlines and doubled quotes; CRLF or LF line ends; blank lines skipped).
--
--   local csv = require "miles.csv"
--   local records = csv.parse(text)       -- { {"path", "label"}, {"a.wav", "cat"}, ... }
--   csv.parse(text, function(cell, quoted) return quoted and cell or tonumber(cell) or cell end)
--
-- convert(cell, quoted) (optional) turns each field's text into the value kept.
-- Malformed text raises "line N is not valid CSV (why)" (error level 0, for the
-- caller to prefix with the file's name).
local csv = {}

local function keep(cell) return cell end

--- The records of a CSV text: a list of lists of fields.
function csv.parse(text, convert)
  convert = convert or keep
  local records, fields, i, n, line = {}, {}, 1, #text, 1
  local function bad(why) error(("line %d is not valid CSV (%s)"):format(line, why), 0) end
  while i <= n do
    local blank = #fields == 0 and text:find("^\r?\n", i)
    if blank then
      i, line = text:find("\n", i, true) + 1, line + 1
    elseif text:sub(i, i) == '"' then
      local parts, j = {}, i + 1
      while true do
        local q = text:find('"', j, true)
        if not q then bad("a quote is not closed") end
        local piece = text:sub(j, q - 1)
        parts[#parts + 1] = piece
        for _ in piece:gmatch("\n") do line = line + 1 end
        if text:sub(q + 1, q + 1) ~= '"' then
          i = q + 1
          break
        end
        parts[#parts + 1], j = '"', q + 2
      end
      fields[#fields + 1] = convert(table.concat(parts), true)
      local c = text:sub(i, i)
      if c ~= "," and c ~= "\r" and c ~= "\n" and c ~= "" then bad("text after a closing quote") end
    else
      local stop = text:find("[,\r\n]", i) or n + 1
      fields[#fields + 1] = convert(text:sub(i, stop - 1), false)
      i = stop
    end
    if not blank then
      if text:sub(i, i) == "," then
        i = i + 1
        if i > n or text:find("^\r?\n", i) then fields[#fields + 1] = convert("", false) end
      elseif i <= n and not text:find("^\r?\n", i) then
        bad("a carriage return without a line feed")
      end
      if i > n or text:find("^\r?\n", i) then
        records[#records + 1] = fields
        fields = {}
        i = (text:find("\n", i, true) or n) + 1
        line = line + 1
      end
    end
  end
  return records
end

return csv
