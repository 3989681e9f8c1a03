--- How tensors print: tensor([[ 1.0000, -2.5000], ...], dtype=float64), with
-- large tensors summarised (the first and last 3 entries of each long dim).
local core = require "miles.core"

local SUMMARY_NUMEL = 1000 -- above this many elements, summarise
local EDGE = 3             -- entries kept at each end of a summarised dim

--- The indices shown along a dim of size n.
local function shown(n, summarise)
  local idx = {}
  if summarise and n > 2 * EDGE then
    for i = 1, EDGE do idx[#idx + 1] = i end
    idx[#idx + 1] = false -- the "..." marker
    for i = n - EDGE + 1, n do idx[#idx + 1] = i end
  else
    for i = 1, n do idx[i] = i end
  end
  return idx
end

--- Collect the values that will be shown (to choose one format for all).
local function collect(t, summarise, out)
  if t:dim() == 0 then
    out[#out + 1] = t:item()
    return
  end
  if t:dim() == 1 then
    local n = t:size(1)
    if summarise and n > 2 * EDGE then
      for _, v in ipairs(t:narrow(1, 1, EDGE):totable()) do out[#out + 1] = v end
      for _, v in ipairs(t:narrow(1, n - EDGE + 1, EDGE):totable()) do out[#out + 1] = v end
    else
      for _, v in ipairs(t:totable()) do out[#out + 1] = v end
    end
    return
  end
  for _, i in ipairs(shown(t:size(1), summarise)) do
    if i then collect(t[i], summarise, out) end
  end
end

--- A formatter for float values: integers as "3.", else fixed or scientific.
local function float_format(values)
  local all_int, maxabs, minabs = true, 0, math.huge
  for _, v in ipairs(values) do
    if v == v and v ~= math.huge and v ~= -math.huge then
      if v ~= math.floor(v) then all_int = false end
      local a = math.abs(v)
      if a > maxabs then maxabs = a end
      if a > 0 and a < minabs then minabs = a end
    end
  end
  local sci = maxabs >= 1e8 or (minabs < 1e-4 and not all_int) or (maxabs / minabs > 1e5 and minabs ~= math.huge and not all_int)
  return function(v)
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" end
    if v == -math.huge then return "-inf" end
    if sci then return string.format("%.4e", v) end
    if all_int then return string.format("%.0f.", v) end
    return string.format("%.4f", v)
  end
end

local function render(t, fmt, width, summarise, indent)
  if t:dim() == 0 then
    return fmt(t:item())
  end
  local parts = {}
  if t:dim() == 1 then
    local n = t:size(1)
    for _, i in ipairs(shown(n, summarise)) do
      if i then
        local s = fmt(t[i]:item())
        parts[#parts + 1] = string.rep(" ", width - #s) .. s
      else
        parts[#parts + 1] = "..."
      end
    end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  for _, i in ipairs(shown(t:size(1), summarise)) do
    parts[#parts + 1] = i and render(t[i], fmt, width, summarise, indent .. " ") or "..."
  end
  local sep = "," .. string.rep("\n", t:dim() - 1) .. indent .. " "
  return "[" .. table.concat(parts, sep) .. "]"
end

local function tensor_tostring(t)
  -- A tensor released by :free() or <close> can still be printed (while debugging).
  if not pcall(t.dim, t) then
    return "tensor(<released>)"
  end
  -- the values from a host copy; device, grad_fn and requires_grad from t itself
  local h = t
  if t:device() ~= "cpu" then
    h = core.no_grad(function() return t:detach():to("cpu") end)
  end
  local dtype = t:dtype()
  local summarise = t:numel() > SUMMARY_NUMEL
  local values = {}
  if t:numel() > 0 then collect(h, summarise, values) end
  local fmt
  if dtype == "bool" then
    fmt = function(v) return v and "true" or "false" end
  elseif dtype == "int64" or dtype == "uint8" then
    fmt = function(v) return string.format("%d", v) end
  else
    fmt = float_format(values)
  end
  local width = 0
  for _, v in ipairs(values) do width = math.max(width, #fmt(v)) end
  local body
  if t:numel() == 0 then
    body = "[]"
  else
    body = render(h, fmt, width, summarise, "       ")
  end
  local extra = {}
  -- As PyTorch: "tensor([])" for an empty vector, the size for other empty shapes.
  if t:numel() == 0 and t:dim() ~= 1 then
    extra[#extra + 1] = "size=(" .. table.concat(t:shape(), ", ") .. ")"
  end
  if dtype ~= "float32" and dtype ~= "int64" and dtype ~= "bool" then
    extra[#extra + 1] = "dtype=" .. dtype
  end
  if t:device() ~= "cpu" then extra[#extra + 1] = "device=" .. t:device() end
  if t.grad_fn then
    extra[#extra + 1] = "grad_fn=<" .. t.grad_fn .. ">"
  elseif t.requires_grad then
    extra[#extra + 1] = "requires_grad=true"
  end
  local tail = #extra > 0 and (", " .. table.concat(extra, ", ")) or ""
  return "tensor(" .. body .. tail .. ")"
end

core._tensor_mt.__tostring = tensor_tostring
core.Tensor.tostring = tensor_tostring
