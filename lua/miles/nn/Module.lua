--- miles.nn.Module: the base class of every layer and model.
--
-- A class is made with `extend`; calling the class makes an instance, calling an
-- instance runs its `forward`:
--
--   local Scale = nn.Module:extend("Scale")
--   function Scale:init(n)                 -- the constructor (no super call needed)
--     self:register_parameter("weight", miles.ones(n, { requires_grad = true }))
--     self.inner = nn.Linear(n, n)         -- assigning a module registers a child
--   end
--   function Scale:forward(x) return self.inner(x) * self.weight end
--   local m = Scale(4); local y = m(miles.randn(2, 4))
--
-- An instance holds, each in registration order (so names are stable):
--   parameters  leaf tensors that require grad (`register_parameter`; nil allowed,
--               as PyTorch's `bias=None`),
--   buffers     tensors that are state but not trained (`register_buffer(name, t,
--               persistent)`; non-persistent ones stay out of `state_dict`),
--   children    modules (`add_module`, or plain assignment `self.name = module`).
-- All three are read as fields (`m.weight`, `m.running_mean`, `m.conv1`) and
-- replaced by assignment (`m.weight = t` keeps the name and its place).
-- Names are dotted paths exactly as PyTorch builds them ("layer1.0.conv1.weight"),
-- so state dicts map one to one onto PyTorch's.
--
-- Subclasses inherit methods through `extend`; a subclass calls its parent's
-- constructor explicitly when it needs it: `Parent.init(self, ...)`.
local miles_core = require "miles.core"
local profile = require "miles.profile"

local Module = { __name = "Module" }

-- Metamethods are looked up raw in an instance's class (Lua does not follow
-- __index for them), so `extend` copies these from the parent.
local INHERITED_META = { "__call", "__tostring", "__len", "__newindex", "__close", "__eq" }

local is_tensor = miles_core.is_tensor

--- Is x an instance of a miles.nn module? (A class is not.)
function Module.is_module(x)
  local mt = type(x) == "table" and getmetatable(x)
  return type(mt) == "table" and rawget(mt, "_is_module_class") == true
end
local is_module = Module.is_module

-- The registries of a fresh instance: ordered names and a name -> value map. A
-- parameter slot registered as nil holds false in `values`.
local function new_registry()
  return { order = {}, values = {} }
end

-- Instances look their fields up here: raw fields first (Lua does that before
-- calling __index), then parameters, buffers, children, then the class chain.
local function make_index(cls)
  return function(self, k)
    if type(k) == "number" then
      local getitem = cls.__getitem
      if getitem then return getitem(self, k) end
      return nil
    end
    -- (No loop over a table of registries: this runs on every field read.)
    local v = rawget(self, "_parameters").values[k]
    if v == nil then v = rawget(self, "_buffers").values[k] end
    if v == nil then v = rawget(self, "_modules").values[k] end
    if v ~= nil then return v or nil end
    return cls[k]
  end
end

-- Assignment: a module value registers (or replaces) a child; a registered
-- parameter or buffer name takes a new tensor (or nil) in place; anything else
-- becomes a plain field.
local function newindex(self, k, v)
  local params, bufs, mods = rawget(self, "_parameters"), rawget(self, "_buffers"),
      rawget(self, "_modules")
  if params.values[k] ~= nil then
    assert(v == nil or is_tensor(v), ("%s: parameter '%s' must be a tensor or nil"):format(
      self.__name, tostring(k)))
    params.values[k] = v or false
  elseif bufs.values[k] ~= nil then
    assert(v == nil or is_tensor(v), ("%s: buffer '%s' must be a tensor or nil"):format(
      self.__name, tostring(k)))
    bufs.values[k] = v or false
  elseif is_module(v) or mods.values[k] ~= nil then
    self:add_module(k, v)
  else
    rawset(self, k, v)
  end
end

-- Add a name to a registry, keeping the first position when it is re-registered.
local function reg_set(reg, name, v)
  if reg.values[name] == nil then
    reg.order[#reg.order + 1] = name
  end
  reg.values[name] = v
end

-- Is the name already taken by another kind of member (or a plain field)?
local function check_name(self, name, kind)
  assert(type(name) == "string" and name ~= "" and not name:find(".", 1, true),
    ("%s: %s name must be a non-empty string without '.', got %s"):format(
      self.__name, kind, tostring(name)))
  for other, reg in pairs({ parameter = self._parameters, buffer = self._buffers,
                            module = self._modules }) do
    if other ~= kind and reg.values[name] ~= nil then
      error(("%s: '%s' is already a %s"):format(self.__name, name, other), 3)
    end
  end
  if rawget(self, name) ~= nil then
    error(("%s: '%s' is already a plain field"):format(self.__name, name), 3)
  end
end

--- Make a subclass named `name`. The class is callable: `Cls(...)` makes an
-- instance and runs `Cls.init(self, ...)` on it.
function Module:extend(name)
  assert(type(name) == "string", "extend: give the class a name")
  local cls = { __name = name, super = self, _is_module_class = true }
  for _, mm in ipairs(INHERITED_META) do
    cls[mm] = rawget(self, mm)
  end
  cls.__index = make_index(cls)
  return setmetatable(cls, {
    __index = self,
    __call = function(c, ...) return c.new(c, ...) end,
    __tostring = function() return "<class " .. name .. ">" end,
  })
end

--- Make an instance of class `cls` (what calling the class does).
function Module.new(cls, ...)
  local self = setmetatable({}, cls)
  rawset(self, "_parameters", new_registry())
  rawset(self, "_buffers", new_registry())
  rawset(self, "_non_persistent", {})
  rawset(self, "_modules", new_registry())
  rawset(self, "training", true)
  self:init(...)
  return self
end

--- The constructor; subclasses override it. The base one takes no arguments.
function Module:init() end

--- The computation; subclasses override it. `m(x, ...)` calls it.
function Module:forward()
  error(self.__name .. ": forward is not implemented", 2)
end

-- Does m have a child module?
local function has_children(m)
  for _, c in pairs(rawget(m, "_modules").values) do
    if c then return true end
  end
  return false
end

-- (Under miles.profile, a module without children is timed by its class.)
Module.__call = function(self, ...)
  if profile.active() and not has_children(self) then
    return profile.timed("forward", self.__name, self.forward, self, ...)
  end
  return self:forward(...)
end

--- Register a parameter: a float leaf tensor that requires grad, or nil (a
-- named empty slot, like PyTorch's `bias=None`). Returns the tensor.
function Module:register_parameter(name, t)
  check_name(self, name, "parameter")
  if t ~= nil then
    assert(is_tensor(t), ("%s: parameter '%s' must be a tensor or nil"):format(self.__name, name))
    assert(t.is_leaf, ("%s: parameter '%s' must be a leaf tensor (use :detach())"):format(
      self.__name, name))
  end
  reg_set(self._parameters, name, t or false)
  return t
end

--- Register a buffer: state that is not trained (running statistics). A
-- persistent buffer (the default) is part of `state_dict`. Returns the tensor.
function Module:register_buffer(name, t, persistent)
  check_name(self, name, "buffer")
  assert(t == nil or is_tensor(t), ("%s: buffer '%s' must be a tensor or nil"):format(
    self.__name, name))
  reg_set(self._buffers, name, t or false)
  self._non_persistent[name] = (persistent == false) or nil
  return t
end

--- Register (or replace, or with nil remove) a child module. Returns it.
function Module:add_module(name, m)
  check_name(self, name, "module")
  assert(m == nil or is_module(m), ("%s: child '%s' must be a module or nil"):format(
    self.__name, tostring(name)))
  reg_set(self._modules, name, m or false)
  return m
end

-- The (name, value) pairs of a registry in order, skipping empty slots.
local function reg_items(reg)
  local out = {}
  for _, name in ipairs(reg.order) do
    local v = reg.values[name]
    if v then out[#out + 1] = { name, v } end
  end
  return out
end

--- The direct children as a list of {name, module}.
function Module:named_children()
  return reg_items(self._modules)
end

--- The direct children as a list.
function Module:children()
  local out = {}
  for _, p in ipairs(self:named_children()) do out[#out + 1] = p[2] end
  return out
end

--- Every module of the tree (this one first, depth first, each once even when it
-- appears in several places) as a list of {name, module}; the root's name is "".
function Module:named_modules(prefix, seen, out)
  prefix, seen, out = prefix or "", seen or {}, out or {}
  if seen[self] then return out end
  seen[self] = true
  out[#out + 1] = { prefix, self }
  for _, c in ipairs(self:named_children()) do
    c[2]:named_modules(prefix == "" and c[1] or (prefix .. "." .. c[1]), seen, out)
  end
  return out
end

--- Every module of the tree as a list (see named_modules).
function Module:modules()
  local out = {}
  for _, p in ipairs(self:named_modules()) do out[#out + 1] = p[2] end
  return out
end

-- Members of one registry over the tree, each tensor once (first name wins), as
-- PyTorch's named_parameters / named_buffers. filter(module, name) may skip some.
local function named_members(self, field, recurse, filter)
  local out, seen = {}, {}
  local mods = recurse == false and { { "", self } } or self:named_modules()
  for _, pm in ipairs(mods) do
    local prefix, m = pm[1], pm[2]
    for _, item in ipairs(reg_items(m[field])) do
      local name, t = item[1], item[2]
      if not seen[t] and (not filter or filter(m, name)) then
        seen[t] = true
        out[#out + 1] = { prefix == "" and name or (prefix .. "." .. name), t }
      end
    end
  end
  return out
end

--- The parameters of the tree as a list of {name, tensor}, in registration
-- order, with PyTorch's dotted names; a shared tensor appears once (its first
-- name). `recurse = false` gives this module's own only.
function Module:named_parameters(recurse)
  return named_members(self, "_parameters", recurse)
end

--- The parameters as a list of tensors, each once. The list is new on every
-- call but holds the modules' own tensors, so it stays valid (no flattening).
function Module:parameters(recurse)
  local out = {}
  for _, p in ipairs(self:named_parameters(recurse)) do out[#out + 1] = p[2] end
  return out
end

--- The buffers of the tree as a list of {name, tensor} (see named_parameters).
function Module:named_buffers(recurse)
  return named_members(self, "_buffers", recurse)
end

--- The buffers as a list of tensors.
function Module:buffers(recurse)
  local out = {}
  for _, p in ipairs(self:named_buffers(recurse)) do out[#out + 1] = p[2] end
  return out
end

--- Set training mode (true by default) on this module and every descendant;
-- read it back as `m.training`. Returns self.
function Module:train(mode)
  if mode == nil then mode = true end
  for _, m in ipairs(self:modules()) do
    rawset(m, "training", mode and true or false)
  end
  return self
end

--- Evaluation mode: `train(false)`. Returns self.
function Module:eval()
  return self:train(false)
end

--- Drop the gradients of every parameter (set them to nil, as PyTorch's
-- set_to_none default).
function Module:zero_grad()
  for _, p in ipairs(self:parameters()) do
    p.grad = nil
  end
end

--- Call fn(m) on every descendant, children first, then on this module (as
-- PyTorch). Returns self.
function Module:apply(fn)
  for _, c in ipairs(self:children()) do
    c:apply(fn)
  end
  fn(self)
  return self
end

--- Move every parameter and buffer to a device ("cpu", "cuda", "cuda:1"), in
-- place: each is replaced by a copy there (parameters stay leaves that require
-- grad; a tensor shared by several modules stays shared). As in PyTorch, move the
-- model before making its optimizer, which holds the tensors it was given.
function Module:to(device)
  assert(type(device) == "string", "Module:to: expects a device name (cpu, cuda or cuda:N)")
  local moved = {}
  local function move(t)
    local c = moved[t]
    if not c then
      c = miles_core.no_grad(function() return t:detach():to(device) end)
      if t.requires_grad then c.requires_grad = true end
      moved[t] = c
    end
    return c
  end
  for _, m in ipairs(self:modules()) do
    for _, reg in ipairs({ rawget(m, "_parameters"), rawget(m, "_buffers") }) do
      for _, name in ipairs(reg.order) do
        local t = reg.values[name]
        if t then reg.values[name] = move(t) end
      end
    end
  end
  return self
end

function Module:cuda(index)
  return self:to(index and ("cuda:" .. index) or "cuda")
end

function Module:cpu()
  return self:to("cpu")
end

-- A deep copy of a value: tables copied with their metatables kept (module
-- classes themselves are shared, not copied), tensors cloned (leaves with the
-- same requires_grad), anything else shared. What is shared in v (a tensor or
-- a table reached twice) is shared in the copy.
local function deep_copy(v, seen)
  if seen[v] ~= nil then return seen[v] end
  if miles_core.is_tensor(v) then
    local c = miles_core.no_grad(function() return v:detach():clone() end)
    if v.requires_grad then c.requires_grad = true end
    seen[v] = c
    return c
  end
  if type(v) ~= "table" or rawget(v, "_is_module_class") then return v end
  local c = {}
  seen[v] = c
  for k, x in next, v do rawset(c, deep_copy(k, seen), deep_copy(x, seen)) end
  return setmetatable(c, getmetatable(v))
end

--- A deep copy of the module tree: parameters and buffers cloned, the same
-- classes, training flags and plain fields; nothing is shared with self but
-- functions and classes.
function Module:clone()
  return deep_copy(self, {})
end

--- The number of parameter elements (each shared tensor counted once). With
-- `trainable_only`, only those that require grad.
function Module:num_parameters(trainable_only)
  local n = 0
  for _, p in ipairs(self:parameters()) do
    if not trainable_only or p.requires_grad then n = n + p:numel() end
  end
  return n
end

-- Append this module's state entries (own parameters, persistent buffers, then
-- the children's, recursively) to names/values, without de-duplication (as
-- PyTorch: a shared tensor is saved under each of its names).
local function collect_state(m, prefix, names, values)
  for _, item in ipairs(reg_items(m._parameters)) do
    names[#names + 1] = prefix .. item[1]
    values[#values + 1] = item[2]
  end
  for _, item in ipairs(reg_items(m._buffers)) do
    if not m._non_persistent[item[1]] then
      names[#names + 1] = prefix .. item[1]
      values[#values + 1] = item[2]
    end
  end
  for _, c in ipairs(m:named_children()) do
    collect_state(c[2], prefix .. c[1] .. ".", names, values)
  end
end

--- The module's state: a table name -> tensor of every parameter and persistent
-- buffer (detached views sharing memory with them, as PyTorch), plus, as a
-- second result, the names in order.
function Module:state_dict()
  local names, values = {}, {}
  collect_state(self, "", names, values)
  local sd = {}
  for i, name in ipairs(names) do
    sd[name] = values[i]:detach()
  end
  return sd, names
end

-- "[64,64,3,3]" for a tensor's shape.
local function shape_str(t)
  return "[" .. table.concat(t:shape(), ",") .. "]"
end

-- The first name of a sorted list and how many others there are, for messages.
local function first_and_more(list, what)
  if #list == 1 then return list[1] end
  return ("%s (and %d more %s)"):format(list[1], #list - 1, what)
end

-- Compare the state dict with the model's: the keys the model lacks in sd, those
-- sd has that the model lacks, and the first shape mismatch message (or nil).
local function diff_state(names, values, sd)
  local missing, unexpected, want, bad = {}, {}, {}, nil
  for i, name in ipairs(names) do
    want[name] = true
    local src = sd[name]
    if src == nil then
      missing[#missing + 1] = name
    elseif not is_tensor(src) then
      bad = bad or ("load_state_dict: %s is a %s in the checkpoint, not a tensor"):format(
        name, type(src))
    elseif not bad and shape_str(src) ~= shape_str(values[i]) then
      bad = ("load_state_dict: %s has shape %s in the checkpoint but %s in the model"):format(
        name, shape_str(src), shape_str(values[i]))
    end
  end
  for name in pairs(sd) do
    if not want[name] then unexpected[#unexpected + 1] = tostring(name) end
  end
  table.sort(unexpected)
  return missing, unexpected, bad
end

--- Copy a state dict (name -> tensor, as from `state_dict` or a checkpoint) into
-- the module's own tensors, in place (optimizers keep their references; values
-- are converted to each tensor's dtype). Everything is checked before anything
-- is copied, so a failed load changes nothing. Options: `strict` (default true):
-- missing or unexpected keys are errors naming the first one; without it they
-- are returned as {missing_keys = {...}, unexpected_keys = {...}}. A shape
-- mismatch is always an error naming the tensor and both shapes.
function Module:load_state_dict(sd, opts)
  assert(type(sd) == "table", "load_state_dict: expects a table name -> tensor")
  local strict = not (opts and opts.strict == false)
  local names, values = {}, {}
  collect_state(self, "", names, values)
  local missing, unexpected, bad = diff_state(names, values, sd)
  if bad then error(bad, 2) end
  if strict and #missing > 0 then
    error("load_state_dict: missing key " .. first_and_more(missing, "missing"), 2)
  end
  if strict and #unexpected > 0 then
    error("load_state_dict: unexpected key " .. first_and_more(unexpected, "unexpected"), 2)
  end
  miles_core.no_grad(function()
    for i, name in ipairs(names) do
      if sd[name] ~= nil then values[i]:copy_(sd[name]) end
    end
  end)
  return { missing_keys = missing, unexpected_keys = unexpected }
end

--- The part of the printed form inside the parentheses; subclasses override it
-- (PyTorch's extra_repr).
function Module:extra_repr()
  return ""
end

-- Indent every line but the first by two spaces.
local function indent(s)
  return (s:gsub("\n", "\n  "))
end

--- A readable tree, as PyTorch's repr:
--   Sequential(
--     (0): Linear(in_features=4, out_features=2, bias=True)
--   )
Module.__tostring = function(self)
  local extra = self:extra_repr()
  local kids = self:named_children()
  if #kids == 0 then
    return self.__name .. "(" .. extra .. ")"
  end
  local lines = { self.__name .. "(" }
  if extra ~= "" then lines[#lines + 1] = "  " .. indent(extra) end
  for _, c in ipairs(kids) do
    lines[#lines + 1] = "  (" .. c[1] .. "): " .. indent(tostring(c[2]))
  end
  lines[#lines + 1] = ")"
  return table.concat(lines, "\n")
end

Module.__newindex = newindex
Module.__index = make_index(Module)
Module._is_module_class = true

return setmetatable(Module, {
  __call = function(c, ...) return c.new(c, ...) end,
  __tostring = function() return "<class Module>" end,
})
