--- miles.nn.args: PyTorch-style constructor arguments for the nn modules.
-- PyTorch's keyword arguments become a trailing option table; the same values
-- may also be given positionally, in PyTorch's order:
--   nn.Conv2d(3, 64, 7, {stride = 2, padding = 3, bias = false})
--   nn.Conv2d(3, 64, 7, 2, 3)           -- stride 2, padding 3
-- An option table is a plain table without array items ({2, 2} is a value).
local core = require "miles.core"

local args = {}

-- Is v a trailing option table rather than a value such as {3, 3}?
local function is_options(v)
  return type(v) == "table" and getmetatable(v) == nil and #v == 0 and not core.is_tensor(v)
end

--- Read the optional arguments of constructor `what`: `names` lists them in
-- PyTorch's positional order, `defaults` maps name -> default; `...` are the
-- values given after the required ones. Returns a table name -> value. Unknown
-- option names, too many values and a value given twice are errors.
function args.parse(what, names, defaults, ...)
  local n = select("#", ...)
  local vals = { ... }
  local opts = {}
  if n > 0 and is_options(vals[n]) then
    opts = vals[n]
    n = n - 1
  end
  if n > #names then
    error(("%s: too many arguments (%d optional ones at most: %s)"):format(
      what, #names, table.concat(names, ", ")), 3)
  end
  local known, out = {}, {}
  for i, name in ipairs(names) do
    known[name] = true
    if i <= n and vals[i] ~= nil then
      if opts[name] ~= nil then
        error(("%s: %s is given twice (as argument %d and as an option)"):format(what, name, i), 3)
      end
      out[name] = vals[i]
    end
  end
  for k, v in pairs(opts) do
    if not known[k] then
      error(("%s: unknown option '%s' (known: %s)"):format(what, tostring(k),
        table.concat(names, ", ")), 3)
    end
    out[k] = v
  end
  for k, v in pairs(defaults) do
    if out[k] == nil then out[k] = v end
  end
  return out
end

--- A size given as a number or a {h, w} table, as a {h, w} table of integers.
function args.pair(v, what)
  if type(v) == "number" then
    assert(math.type(v) == "integer", what .. " must be an integer or a pair of integers")
    return { v, v }
  end
  assert(type(v) == "table" and #v == 2 and math.type(v[1]) == "integer"
    and math.type(v[2]) == "integer", what .. " must be an integer or a pair of integers")
  return { v[1], v[2] }
end

--- A value as Python prints it, for the modules' printed form (True, None,
-- 1e-05, (3, 3)).
function args.repr(v)
  if v == nil then return "None" end
  if v == true then return "True" end
  if v == false then return "False" end
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = args.repr(x) end
    return "(" .. table.concat(parts, ", ") .. (#parts == 1 and ",)" or ")")
  end
  if type(v) == "string" then return "'" .. v .. "'" end
  return tostring(v)
end

return args
