--- miles.checkpoint: save and restore a model (and optimizer) in safetensors.
--
--   local checkpoint = require "miles.checkpoint"
--   checkpoint.save("run/last.safetensors", { model = net, optimizer = opt,
--                                             meta = { epoch = 3, val_acc = 0.91 } })
--   local meta = checkpoint.load("run/last.safetensors", { model = net, optimizer = opt })
--
-- What is written:
--   path            a safetensors file (Python's `safetensors` and PyTorch read it):
--                   the model's state_dict under "model.<name>" ("model.conv1.weight"),
--                   the optimizer's state tensors under "optim.<index>.<key>"
--                   ("optim.3.exp_avg", parameters numbered as opt:state_dict() does);
--                   its metadata holds the JSON below under "miles.checkpoint".
--   path .. ".json" the same JSON, for people and scripts: {format, id, meta,
--                   optimizer = {hyper-parameters, param_groups, scalar state}}.
-- Both are written atomically (temporary file, fsync, rename), the JSON first
-- and the safetensors file last: the safetensors file is the commit point, and
-- since it carries its own copy of the JSON, a crash between the two writes
-- leaves the previous checkpoint whole. `load` reads only the safetensors file.
--
-- Only parameters, persistent buffers and optimizer state are saved (no
-- activations, no code), so files stay the size of the weights.
local core = require "miles.core"

local checkpoint = {}

local FORMAT = "miles.checkpoint/1"
local META_KEY = "miles.checkpoint"

-- ---------------------------------------------------------------------------
-- JSON, just what checkpoints need: nil, booleans, numbers (integers stay
-- integers, floats keep a '.', an exponent or NaN/Infinity as Python's json
-- writes them), strings, arrays (tables with keys 1..n) and objects (string keys).

local encode_value

-- A string as a JSON string literal.
local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
    return named[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

-- A number: integers as they are, floats so that they read back as floats.
local function encode_number(x)
  if math.type(x) == "integer" then return tostring(x) end
  if x ~= x then return "NaN" end
  if x == math.huge then return "Infinity" end
  if x == -math.huge then return "-Infinity" end
  local s = ("%.17g"):format(x)
  if tonumber(("%.15g"):format(x)) == x then s = ("%.15g"):format(x) end
  if not s:find("[.eEn]") then s = s .. ".0" end
  return s
end

-- Is t a sequence 1..n (n > 0)? Returns n, or nil for an object.
local function array_length(t)
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return nil end
    n = n + 1
  end
  for i = 1, n do
    if t[i] == nil then return nil end
  end
  return n > 0 and n or nil
end

-- A table as a JSON array or object (keys sorted, for stable files).
local function encode_table(t, indent, path)
  local pad, inner = ("  "):rep(indent), ("  "):rep(indent + 1)
  local n = array_length(t)
  local parts = {}
  if n then
    local flat = true
    for i = 1, n do
      parts[i] = encode_value(t[i], indent + 1, path .. "[" .. i .. "]")
      flat = flat and type(t[i]) ~= "table"
    end
    if flat then return "[" .. table.concat(parts, ", ") .. "]" end
    return "[\n" .. inner .. table.concat(parts, ",\n" .. inner) .. "\n" .. pad .. "]"
  end
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" then
      error(("checkpoint: %s has a %s key; JSON objects need string keys"):format(path, type(k)), 0)
    end
    keys[#keys + 1] = k
  end
  if #keys == 0 then return "{}" end
  table.sort(keys)
  for i, k in ipairs(keys) do
    parts[i] = inner .. encode_string(k) .. ": " .. encode_value(t[k], indent + 1, path .. "." .. k)
  end
  return "{\n" .. table.concat(parts, ",\n") .. "\n" .. pad .. "}"
end

-- Any value; path names it in errors ("meta.lr").
encode_value = function(v, indent, path)
  local ty = type(v)
  if v == nil then return "null" end
  if ty == "boolean" then return tostring(v) end
  if ty == "number" then return encode_number(v) end
  if ty == "string" then return encode_string(v) end
  if ty == "table" and not core.is_tensor(v) then return encode_table(v, indent, path) end
  error(("checkpoint: %s is a %s, which cannot be written as JSON"):format(path,
    core.is_tensor(v) and "tensor" or ty), 0)
end

--- Encode a Lua value as (indented) JSON text.
function checkpoint.json_encode(v)
  return encode_value(v, 0, "value")
end

local decode_value

-- Raise a decoding error at position i of s.
local function jerr(s, i, what)
  error(("checkpoint: bad JSON (%s at byte %d near '%s')"):format(what, i, s:sub(i, i + 15)), 0)
end

-- Skip whitespace from i; returns the next position.
local function skip_ws(s, i)
  return s:find("[^ \t\r\n]", i) or #s + 1
end

-- A \u escape's code point (joining a surrogate pair) as UTF-8; returns it and
-- the position after the escape.
local function decode_unicode(s, i)
  local cp = tonumber(s:sub(i, i + 3), 16)
  if not cp or not s:sub(i, i + 3):match("^%x%x%x%x$") then jerr(s, i, "bad \\u escape") end
  i = i + 4
  if cp >= 0xD800 and cp < 0xDC00 and s:sub(i, i + 1) == "\\u" then
    local lo = tonumber(s:sub(i + 2, i + 5), 16)
    if lo and lo >= 0xDC00 and lo < 0xE000 then
      cp, i = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00), i + 6
    end
  end
  return utf8.char(cp), i
end

-- A string starting at the quote at i; returns it and the position after it.
local function decode_string(s, i)
  local out, j = {}, i + 1
  local named = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\",
                  ["/"] = "/" }
  while true do
    local k = s:find('["\\]', j)
    if not k then jerr(s, i, "unterminated string") end
    out[#out + 1] = s:sub(j, k - 1)
    if s:sub(k, k) == '"' then return table.concat(out), k + 1 end
    local e = s:sub(k + 1, k + 1)
    if e == "u" then
      out[#out + 1], j = decode_unicode(s, k + 2)
    elseif named[e] then
      out[#out + 1], j = named[e], k + 2
    else
      jerr(s, k, "bad escape")
    end
  end
end

-- A number (or NaN / Infinity) at i: an integer unless it has '.' or an exponent.
local function decode_number(s, i)
  for word, v in pairs({ NaN = 0 / 0, Infinity = math.huge, ["-Infinity"] = -math.huge }) do
    if s:sub(i, i + #word - 1) == word then return v, i + #word end
  end
  local text = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  local v = text and tonumber(text)
  if not v then jerr(s, i, "unexpected character") end
  if text:find("[.eE]") then return v + 0.0, i + #text end
  return math.tointeger(v) or v, i + #text
end

-- The items of an array or object whose bracket is at i; returns it and the
-- position after the closing bracket.
local function decode_container(s, i, close)
  local out, n = {}, 0
  i = skip_ws(s, i + 1)
  if s:sub(i, i) == close then return out, i + 1 end
  while true do
    local key
    if close == "}" then
      if s:sub(i, i) ~= '"' then jerr(s, i, "expected a string key") end
      key, i = decode_string(s, i)
      i = skip_ws(s, i)
      if s:sub(i, i) ~= ":" then jerr(s, i, "expected ':'") end
      i = skip_ws(s, i + 1)
    end
    local v
    v, i = decode_value(s, i)
    if close == "}" then out[key] = v else n = n + 1; out[n] = v end
    i = skip_ws(s, i)
    local c = s:sub(i, i)
    if c == close then return out, i + 1 end
    if c ~= "," then jerr(s, i, "expected ',' or '" .. close .. "'") end
    i = skip_ws(s, i + 1)
  end
end

-- Any value at i (whitespace skipped); returns it and the position after it.
decode_value = function(s, i)
  i = skip_ws(s, i)
  local c = s:sub(i, i)
  if c == "{" then return decode_container(s, i, "}") end
  if c == "[" then return decode_container(s, i, "]") end
  if c == '"' then return decode_string(s, i) end
  for word, v in pairs({ ["true"] = true, ["false"] = false, null = "\0null" }) do
    if s:sub(i, i + #word - 1) == word then
      if v == "\0null" then return nil, i + #word end
      return v, i + #word
    end
  end
  return decode_number(s, i)
end

--- Decode JSON text into Lua values (null becomes nil).
function checkpoint.json_decode(s)
  local v, i = decode_value(s, 1)
  if skip_ws(s, i) <= #s then jerr(s, i, "text after the value") end
  return v
end

-- ---------------------------------------------------------------------------
-- Saving

-- A fresh identifier for one save, shared by the two files it writes. It draws
-- nothing from miles' or Lua's random generators, so saving does not change a
-- seeded run.
local saves = 0
local function new_id()
  saves = saves + 1
  local addr = tostring({}):match("0x(%x+)") or "0"
  return ("%x-%x-%s-%d"):format(os.time(), math.floor(os.clock() * 1e6), addr, saves)
end

-- A tensor on the cpu (files are written from host memory).
local function to_cpu(t)
  if t:device() ~= "cpu" then return t:to("cpu") end
  return t
end

-- Split an optimizer state_dict into tensors ("optim.<n>.<key>") and the rest.
local function split_optimizer(sd, tensors)
  local rest = {}
  for k, v in pairs(sd) do
    if k ~= "state" then rest[k] = v end
  end
  rest.state = {}
  for n, st in pairs(sd.state or {}) do
    local scalars = {}
    for k, v in pairs(st) do
      if core.is_tensor(v) then
        tensors[("optim.%d.%s"):format(n, k)] = to_cpu(v)
      else
        scalars[k] = v
      end
    end
    rest.state[tostring(n)] = scalars
  end
  return rest
end

--- Save a checkpoint at `path` (a safetensors file, plus `path .. ".json"`).
-- opts: model (a module; required), optimizer (optional, anything with
-- state_dict()), meta (a table of JSON values: epoch, metrics, config...).
function checkpoint.save(path, opts)
  assert(type(path) == "string", "checkpoint.save: give the path")
  assert(type(opts) == "table" and opts.model, "checkpoint.save: give {model = m, ...}")
  local tensors = {}
  for name, t in pairs(opts.model:state_dict()) do
    tensors["model." .. name] = to_cpu(t)
  end
  local info = { format = FORMAT, id = new_id(), meta = opts.meta or {} }
  if opts.optimizer then
    info.optimizer = split_optimizer(opts.optimizer:state_dict(), tensors)
  end
  local json = checkpoint.json_encode(info) .. "\n"
  core.write_file_atomic(path .. ".json", json)
  core.save_safetensors(path, tensors, { [META_KEY] = json, format = "pt" })
  return info.id
end

-- ---------------------------------------------------------------------------
-- Loading

-- The model's tensors of a file: those under "model.", or, in a plain
-- safetensors file (no miles metadata, no "model." names), all of them.
local function model_tensors(tensors, is_miles)
  local sd, any = {}, false
  for name, t in pairs(tensors) do
    local rest = name:match("^model%.(.*)$")
    if rest then sd[rest], any = t, true end
  end
  if not any and not is_miles then return tensors end
  return sd
end

-- Rebuild the optimizer's state_dict from the JSON and the "optim." tensors.
local function optimizer_state(info, tensors, path)
  local sd = {}
  for k, v in pairs(info) do
    if k ~= "state" then sd[k] = v end
  end
  sd.state = {}
  for n, scalars in pairs(info.state or {}) do
    sd.state[math.tointeger(tonumber(n)) or n] = scalars
  end
  for name, t in pairs(tensors) do
    local n, key = name:match("^optim%.(%d+)%.(.+)$")
    if n then
      n = math.tointeger(tonumber(n))
      if not sd.state[n] then
        error(("checkpoint.load: %s: tensor %s has no optimizer state entry"):format(path, name), 0)
      end
      sd.state[n][key] = t
    end
  end
  return sd
end

--- Restore a checkpoint written by `save` into opts.model (strict by default;
-- `strict = false` allows missing and unexpected names) and, when given,
-- opts.optimizer. Values are copied into the model's own tensors. Returns the
-- saved meta table and the whole JSON record. A plain safetensors file of a
-- state_dict (e.g. exported from PyTorch) loads into a model too.
function checkpoint.load(path, opts)
  assert(type(path) == "string", "checkpoint.load: give the path")
  opts = opts or {}
  local tensors, md = core.load_safetensors(path)
  local info = md[META_KEY] and checkpoint.json_decode(md[META_KEY]) or {}
  if md[META_KEY] and info.format ~= FORMAT then
    error(("checkpoint.load: %s: unknown checkpoint format '%s'"):format(path,
      tostring(info.format)), 0)
  end
  if opts.model then
    local ok, err = pcall(opts.model.load_state_dict, opts.model,
      model_tensors(tensors, md[META_KEY] ~= nil), { strict = opts.strict })
    if not ok then error(("checkpoint.load: %s: %s"):format(path, tostring(err)), 0) end
  end
  if opts.optimizer then
    if not info.optimizer then
      error(("checkpoint.load: %s holds no optimizer state"):format(path), 0)
    end
    opts.optimizer:load_state_dict(optimizer_state(info.optimizer, tensors, path))
  end
  return info.meta or {}, info
end

return checkpoint
