--- miles.optim: Adam, AdamW and SGD over parameter groups.
--
-- The update of each group's parameters runs in C (csrc/optim.c, PyTorch 1.13's
-- single-tensor arithmetic; on a GPU one fused kernel launch per group); everything
-- else is here, in plain Lua tables that can be read and changed between steps:
--
--   local optim = require "miles.optim"
--   local opt = optim.Adam({
--     { name = "audio", params = audio_net:parameters() },
--     { name = "image", params = image_net:parameters() },
--     { name = "fusion", params = head:parameters(), lr = 1e-4 },
--   }, { lr = 1e-3 })
--   loss:backward(); opt:step(); opt:zero_grad()
--   opt:set_lr("audio", 5e-4)          -- or opt:group("audio").lr = 5e-4
--   opt:group("image").frozen = true   -- or lr = 0: parameters and state untouched
--
-- The first argument is a list of tensors (one group), a module (its
-- parameters), or a list of groups: tables with `params` (a list of tensors, a
-- tensor or a module), an optional `name`, and any hyper-parameter that differs
-- from the defaults (the second argument, over PyTorch's defaults).
--
--   opt.groups            the groups (also opt.param_groups), in order; each a
--                         table {name=, params=, lr=, betas=, ...} read by every step
--   opt.state[p]          {step = n, exp_avg = t, exp_avg_sq = t [, max_exp_avg_sq = t]}
--                         (SGD: {step = n [, momentum_buffer = t]}), made at p's first step
--   opt:state_dict()      a snapshot: {optimizer =, param_groups =, state = {[i] = ...}}
--                         with parameters numbered through the groups in order, as PyTorch
--   opt:load_state_dict(sd)
--
-- A frozen group (`frozen = true`, or `lr = 0`) is skipped whole: its parameters,
-- their state and their step counters stay as they are. A parameter without a
-- gradient (`p.grad == nil`) is skipped, as in PyTorch.
local core = require "miles.core"
local cuda_graph = require "miles.cuda_graph"

local C = core._optim
if not C then
  error("miles.optim: this build has no optimizer kernels (luaopen_miles_core must call "
    .. "l_optim_open)", 0)
end
local is_tensor = core.is_tensor

local optim = {}

-- ---------------------------------------------------------------------------
-- Helpers

-- A deep copy of plain tables (betas, user fields); tensors and other values as
-- they are.
local function copy(v)
  if type(v) ~= "table" or is_tensor(v) then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end

-- "group 2 ('image')" or "group 2", for messages.
local function label(i, g)
  if g and g.name ~= nil then return ("group %d ('%s')"):format(i, tostring(g.name)) end
  return ("group %d"):format(i)
end

local function shape_str(t)
  return "[" .. table.concat(t:shape(), ",") .. "]"
end

-- A zero tensor like p (dtype and device).
local function zeros_like(p)
  return core.zeros(p:shape(), { dtype = p:dtype(), device = p:device() })
end

-- Is the group skipped by step()?
local function is_frozen(g)
  return g.frozen == true or g.lr == 0
end

-- ---------------------------------------------------------------------------
-- The algorithms: the C kernel's name (for messages and checks), the options and
-- their defaults (PyTorch's; `lr = nil`: required), and the update of a group's
-- parameters ps (those with a gradient) from their gradients gs, their state
-- tables sts and the group, in one call of the C group update (on a GPU, one
-- fused kernel launch for the group). The state's step counters move only when
-- the update succeeded.

local function adam_update(kernel)
  return function(ps, gs, sts, group)
    local ms, vs, vmaxs, steps = {}, {}, group.amsgrad and {} or nil, {}
    for k, p in ipairs(ps) do
      local st = sts[k]
      st.exp_avg = st.exp_avg or zeros_like(p)
      st.exp_avg_sq = st.exp_avg_sq or zeros_like(p)
      ms[k], vs[k] = st.exp_avg, st.exp_avg_sq
      if vmaxs then
        st.max_exp_avg_sq = st.max_exp_avg_sq or zeros_like(p)
        vmaxs[k] = st.max_exp_avg_sq
      end
      steps[k] = st.step + 1
    end
    kernel(ps, gs, ms, vs, vmaxs, steps, group)
    for k, st in ipairs(sts) do st.step = steps[k] end
  end
end

local function sgd_update(ps, gs, sts, group)
  local bufs, firsts = nil, nil
  if group.momentum ~= 0 then
    bufs, firsts = {}, {}
    for k, p in ipairs(ps) do
      local buf = sts[k].momentum_buffer
      if buf then
        firsts[k] = false
      else
        buf, firsts[k] = zeros_like(p), true
      end
      bufs[k] = buf
    end
  end
  C.sgd_group_step(ps, gs, bufs, firsts, group)
  for k, st in ipairs(sts) do
    if bufs then st.momentum_buffer = bufs[k] end
    st.step = st.step + 1
  end
end

local ADAM_OPTIONS = { "lr", "betas", "eps", "weight_decay", "amsgrad", "maximize" }

local ALGOS = {
  Adam = {
    kernel = "adam",
    options = ADAM_OPTIONS,
    defaults = { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0,
                 amsgrad = false, maximize = false },
    update = adam_update(C.adam_group_step),
  },
  AdamW = {
    kernel = "adamw",
    options = ADAM_OPTIONS,
    defaults = { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 1e-2,
                 amsgrad = false, maximize = false },
    update = adam_update(C.adamw_group_step),
  },
  SGD = {
    kernel = "sgd",
    options = { "lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize" },
    defaults = { momentum = 0, dampening = 0, weight_decay = 0, nesterov = false,
                 maximize = false },
    update = sgd_update,
  },
}

-- ---------------------------------------------------------------------------
-- The optimizer

local Optimizer = {}
Optimizer.__index = Optimizer
optim.Optimizer = Optimizer

-- A list of tensors from a tensor, a list of tensors or a module.
local function param_list(who, where, params)
  if is_tensor(params) then return { params } end
  if type(params) == "table" and type(params.parameters) == "function" then
    return params:parameters()
  end
  if type(params) ~= "table" then
    error(("%s: %s: params must be a list of tensors, a tensor or a module, not a %s")
      :format(who, where, type(params)), 0)
  end
  local out = {}
  for i, p in ipairs(params) do out[i] = p end
  return out
end

-- Check the hyper-parameters of group g (the i-th) with the C kernel's rules;
-- the message names the group.
local function check_group(self, i, g)
  local ok, msg = C.check(self._algo.kernel, g)
  if not ok then
    error((msg:gsub("^(%w+): ", "%1: " .. label(i, g) .. ": ", 1)), 0)
  end
end

-- Check that p can be the j-th parameter of group i and is in no group yet.
local function check_param(self, i, g, j, p)
  local who, where = self._algo.kernel, label(i, g)
  if not is_tensor(p) then
    error(("%s: %s: parameter %d is a %s, not a tensor"):format(who, where, j, type(p)), 0)
  end
  local dt = p:dtype()
  if dt ~= "float32" and dt ~= "float64" then
    error(("%s: %s: parameter %d is %s; only float32 and float64 tensors can be optimized")
      :format(who, where, j, dt), 0)
  end
  if not p.is_leaf then
    error(("%s: %s: parameter %d is not a leaf (it comes from %s); optimize the tensors it "
      .. "is computed from, or a :detach()ed copy"):format(who, where, j, p.grad_fn), 0)
  end
  if not p:is_contiguous() then
    error(("%s: %s: parameter %d is not contiguous"):format(who, where, j), 0)
  end
  local seen = self._by_id[C.id(p)]
  if seen then
    error(("%s: %s: parameter %d is already in %s (as its parameter %d); a parameter may "
      .. "appear only once"):format(who, where, j, label(seen.gi, self.groups[seen.gi]),
        seen.j), 0)
  end
end

--- Add a group: {params = ..., name = ..., <hyper-parameters>}. Missing values
-- come from the optimizer's defaults; the group is checked whole before it is
-- added. Returns the group table kept by the optimizer.
function Optimizer:add_param_group(group)
  local who = self._algo.kernel
  local i = #self.groups + 1
  if type(group) ~= "table" or is_tensor(group) then
    error(("%s: add_param_group: a group is a table {params = ..., ...}, not a %s")
      :format(who, type(group)), 0)
  end
  local g = {}
  for k, v in pairs(group) do
    if k ~= "params" then g[k] = copy(v) end
  end
  for k, v in pairs(self.defaults) do
    if g[k] == nil then g[k] = copy(v) end
  end
  if g.lr == nil then
    error(("%s: %s has no lr (%s has no default learning rate)"):format(who, label(i, g),
      self.kind), 0)
  end
  if g.name ~= nil and self:_find(g.name) then
    error(("%s: %s: there is already a group named '%s'"):format(who, label(i, g),
      tostring(g.name)), 0)
  end
  check_group(self, i, g)
  g.params = param_list(who, label(i, g), group.params)
  local ids = {}
  for j, p in ipairs(g.params) do
    check_param(self, i, g, j, p)
    local id = C.id(p)
    if ids[id] then
      error(("%s: %s: parameter %d is the same tensor as its parameter %d; a parameter may "
        .. "appear only once"):format(who, label(i, g), j, ids[id]), 0)
    end
    ids[id] = j
  end
  for id, j in pairs(ids) do self._by_id[id] = { p = g.params[j], gi = i, j = j } end
  self.groups[i] = g
  return g
end

-- The index of the group with this name, or nil.
function Optimizer:_find(name)
  for i, g in ipairs(self.groups) do
    if g.name == name then return i end
  end
  return nil
end

-- Make an optimizer of the algorithm `kind` (see optim.Adam).
local function new(kind, params, defaults)
  local algo = ALGOS[kind]
  local who = algo.kernel
  local self = setmetatable({ kind = kind, groups = {}, defaults = {}, _algo = algo,
                              _by_id = {} }, Optimizer)
  self.param_groups = self.groups
  -- opt.state[p] also finds p's state through another Lua value holding p.
  local by_id = self._by_id
  self.state = setmetatable({}, {
    __index = function(t, k)
      if is_tensor(k) then
        local e = by_id[C.id(k)]
        if e then return rawget(t, e.p) end
      end
      return nil
    end,
  })
  local allowed = {}
  for _, k in ipairs(algo.options) do allowed[k] = true end
  for k, v in pairs(algo.defaults) do self.defaults[k] = copy(v) end
  if defaults ~= nil and type(defaults) ~= "table" then
    error(("%s: the options must be a table {lr = ..., ...}, not a %s"):format(who,
      type(defaults)), 0)
  end
  for k, v in pairs(defaults or {}) do
    if not allowed[k] then
      error(("%s: unknown option '%s' (options: %s)"):format(who, tostring(k),
        table.concat(algo.options, ", ")), 0)
    end
    self.defaults[k] = copy(v)
  end
  if params == nil or (type(params) == "table" and not is_tensor(params) and
      type(params.parameters) ~= "function" and next(params) == nil) then
    error(("%s: got an empty parameter list"):format(who), 0)
  end
  -- A list of groups (tables with params) or one group's parameters.
  local is_groups = type(params) == "table" and not is_tensor(params) and
      type(params.parameters) ~= "function" and type(params[1]) == "table" and
      not is_tensor(params[1]) and type(params[1].parameters) ~= "function"
  if is_groups then
    for _, g in ipairs(params) do self:add_param_group(g) end
  else
    self:add_param_group({ params = params })
  end
  if next(self._by_id) == nil then
    error(("%s: got an empty parameter list"):format(who), 0)
  end
  return self
end

--- optim.Adam(params_or_groups, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8,
--  weight_decay = 0, amsgrad = false, maximize = false}): weight decay is L2
--  (added to the gradient).
function optim.Adam(params, defaults) return new("Adam", params, defaults) end

--- optim.AdamW(...): as Adam with decoupled weight decay (p = p * (1 - lr * wd)),
--  weight_decay 1e-2 by default.
function optim.AdamW(params, defaults) return new("AdamW", params, defaults) end

--- optim.SGD(params_or_groups, {lr = (required), momentum = 0, dampening = 0,
--  weight_decay = 0, nesterov = false, maximize = false}).
function optim.SGD(params, defaults) return new("SGD", params, defaults) end

-- Inside a CUDA graph capture, a step must be one that the graph can replay: the
-- parameter on a GPU, its state already made (by a step before the capture), its
-- gradient contiguous (a copy made here would not be the one the graph fills).
local function check_capturable(self, gi, g, j, p, grad)
  local who, where = self._algo.kernel, label(gi, g)
  if not p:device():match("^cuda") then
    error(("%s: %s: parameter %d is on the %s: only GPU parameters can step inside a CUDA graph")
      :format(who, where, j, p:device()), 0)
  end
  if rawget(self.state, p) == nil then
    error(("%s: %s: parameter %d has no optimizer state yet: take one step before capturing "
      .. "the CUDA graph (the state is made at the first step)"):format(who, where, j), 0)
  end
  if not grad:is_contiguous() then
    error(("%s: %s: parameter %d has a non-contiguous gradient, which a CUDA graph cannot "
      .. "step"):format(who, where, j), 0)
  end
end

--- One update of every parameter that has a gradient, in every group that is not
-- frozen: one C call per group (one fused kernel launch on a GPU). Every such
-- group is checked first, so a bad value (set between steps) raises before
-- anything moves; a bad tensor raises before anything of its group moves.
-- closure, if given, is called first (it returns the loss, which step returns).
function Optimizer:step(closure)
  local loss
  if closure then loss = closure() end
  for i, g in ipairs(self.groups) do
    if not is_frozen(g) then check_group(self, i, g) end
  end
  local update, state = self._algo.update, self.state
  local capturing = cuda_graph.capturing()
  for gi, g in ipairs(self.groups) do
    if not is_frozen(g) then
      -- the parameters with a gradient, their state (new tables for new ones,
      -- kept only if the update succeeds) and their places in g.params
      local ps, gs, sts, places = {}, {}, {}, {}
      for j, p in ipairs(g.params) do
        local grad = p.grad
        if grad then
          if capturing then check_capturable(self, gi, g, j, p, grad) end
          if not grad:is_contiguous() then grad = grad:contiguous() end
          local k = #ps + 1
          ps[k], gs[k], sts[k], places[k] = p, grad, rawget(state, p) or { step = 0 }, j
        end
      end
      if #ps > 0 then
        -- a captured step runs at each replay, where it is refreshed and counted
        local steps = capturing and {} or nil
        if steps then for k, st in ipairs(sts) do steps[k] = st.step end end
        local ok, err = pcall(update, ps, gs, sts, g)
        if steps then for k, st in ipairs(sts) do st.step = steps[k] end end
        if not ok then
          -- the C update names the failing tensor "(tensor k of n)": name the
          -- group and the parameter instead
          if type(err) == "string" then
            err = err:gsub(" %(tensor (%d+) of %d+%)$", function(k)
              return (" (%s, parameter %d)"):format(label(gi, g), places[tonumber(k)])
            end)
          end
          error(err, 0)
        end
        for k, p in ipairs(ps) do rawset(state, p, sts[k]) end
      end
    end
  end
  if capturing then cuda_graph.on_replay(function() self:step() end, function() return self:_save_steps() end) end
  return loss
end

-- A function that sets every parameter's step counter back to its value now.
function Optimizer:_save_steps()
  local saved = {}
  for _, st in pairs(self.state) do saved[st] = st.step end
  return function()
    for st, n in pairs(saved) do st.step = n end
  end
end

--- Drop every parameter's gradient (set_to_none, the default), or with
-- zero_grad(false) fill the gradients with zeros in place.
function Optimizer:zero_grad(set_to_none)
  for _, g in ipairs(self.groups) do
    for _, p in ipairs(g.params) do
      if set_to_none == false then
        local grad = p.grad
        if grad then grad:zero_() end
      else
        p.grad = nil
      end
    end
  end
end

--- The group named `key`, or the key-th group; with no key, the only group. The
-- table returned is the optimizer's own: its fields can be changed between steps.
function Optimizer:group(key)
  local who = self._algo.kernel
  if key == nil then
    if #self.groups == 1 then return self.groups[1] end
    error(("%s: there are %d groups: name one"):format(who, #self.groups), 0)
  end
  if math.type(key) == "integer" then
    local g = self.groups[key]
    if g then return g end
    error(("%s: no group %d (there are %d)"):format(who, key, #self.groups), 0)
  end
  local i = self:_find(key)
  if i then return self.groups[i] end
  local names = {}
  for j, g in ipairs(self.groups) do names[#names + 1] = g.name ~= nil and tostring(g.name) or tostring(j) end
  error(("%s: no group named '%s' (groups: %s)"):format(who, tostring(key),
    table.concat(names, ", ")), 0)
end

--- set_lr(key, lr) sets one group's learning rate; set_lr(lr) every group's.
function Optimizer:set_lr(key, lr)
  local groups
  if lr == nil then
    groups, lr = self.groups, key
  else
    groups = { self:group(key) }
  end
  if type(lr) ~= "number" or not (lr >= 0) then
    error(("%s: invalid learning rate %s (must be a number >= 0)"):format(self._algo.kernel,
      tostring(lr)), 0)
  end
  for _, g in ipairs(groups) do g.lr = lr end
end

--- The learning rate of a group (see group for the key).
function Optimizer:lr(key)
  return self:group(key).lr
end

--- Freeze a group (step leaves its parameters and state alone) or unfreeze it.
function Optimizer:freeze(key) self:group(key).frozen = true end
function Optimizer:unfreeze(key) self:group(key).frozen = false end

--- A snapshot of the optimizer: its groups' hyper-parameters (params replaced by
-- the parameters' numbers, 1, 2, ... through the groups in order) and the state
-- of each parameter that has some, under its number. The state's tensors are
-- copies, so training on does not change a snapshot taken earlier.
function Optimizer:state_dict()
  local sd = { optimizer = self.kind, param_groups = {}, state = {} }
  local n = 0
  for gi, g in ipairs(self.groups) do
    local sg = {}
    for k, v in pairs(g) do
      if k ~= "params" then sg[k] = copy(v) end
    end
    sg.params = {}
    for _, p in ipairs(g.params) do
      n = n + 1
      sg.params[#sg.params + 1] = n
      local st = rawget(self.state, p)
      if st then
        local s = {}
        for k, v in pairs(st) do s[k] = is_tensor(v) and v:clone() or copy(v) end
        sd.state[n] = s
      end
    end
    sd.param_groups[gi] = sg
  end
  return sd
end

-- Check a state_dict against this optimizer and build the new state (keyed by
-- parameter) without changing anything yet.
local function prepare_load(self, sd)
  local who = self._algo.kernel .. ": load_state_dict"
  if type(sd) ~= "table" or type(sd.param_groups) ~= "table" or
      (sd.state ~= nil and type(sd.state) ~= "table") then
    error(who .. ": expected a table {param_groups = {...}, state = {...}}", 0)
  end
  if sd.optimizer ~= nil and sd.optimizer ~= self.kind then
    error(("%s: the state is of %s, this optimizer is %s"):format(who, tostring(sd.optimizer),
      self.kind), 0)
  end
  if #sd.param_groups ~= #self.groups then
    error(("%s: the state has %d parameter groups, the optimizer %d"):format(who,
      #sd.param_groups, #self.groups), 0)
  end
  local by_number = {} -- saved number -> {p, group index, position}
  for gi, g in ipairs(self.groups) do
    local sg = sd.param_groups[gi]
    if type(sg) ~= "table" or type(sg.params) ~= "table" then
      error(("%s: %s of the state has no params list"):format(who, label(gi, g)), 0)
    end
    if #sg.params ~= #g.params then
      error(("%s: %s has %d parameters in the state but %d in the optimizer"):format(who,
        label(gi, g), #sg.params, #g.params), 0)
    end
    if sg.name ~= nil and g.name ~= nil and sg.name ~= g.name then
      error(("%s: group %d is named '%s' in the state but '%s' in the optimizer"):format(who,
        gi, tostring(sg.name), tostring(g.name)), 0)
    end
    local merged = copy(sg)
    for k, v in pairs(self.defaults) do
      if merged[k] == nil then merged[k] = copy(v) end
    end
    check_group(self, gi, merged)
    for j, p in ipairs(g.params) do by_number[sg.params[j]] = { p = p, gi = gi, j = j } end
  end
  local new_state = {}
  for num, s in pairs(sd.state or {}) do
    local e = by_number[num]
    if not e then
      error(("%s: the state has an entry for parameter %s, which no group lists"):format(who,
        tostring(num)), 0)
    end
    local where = ("parameter %s (%s, its parameter %d)"):format(tostring(num),
      label(e.gi, self.groups[e.gi]), e.j)
    if type(s) ~= "table" or math.type(s.step) ~= "integer" or s.step < 0 then
      error(("%s: %s: the state must be a table with an integer step >= 0"):format(who, where),
        0)
    end
    local ns, keys = {}, {}
    for k in pairs(s) do keys[#keys + 1] = k end
    -- in a fixed order, so that the first bad field named is always the same one
    table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
    for _, k in ipairs(keys) do
      local v = s[k]
      if is_tensor(v) then
        if shape_str(v) ~= shape_str(e.p) then
          error(("%s: %s: %s has shape %s but the parameter has %s"):format(who, where,
            tostring(k), shape_str(v), shape_str(e.p)), 0)
        end
        -- the state lives in the parameter's dtype and on its device (a state
        -- saved from the CPU goes to the GPU the parameter is on, and back)
        v = v:to(e.p:dtype())
        if v:device() ~= e.p:device() then v = v:to(e.p:device()) end
        v = v:clone()
      else
        v = copy(v)
      end
      ns[k] = v
    end
    new_state[e.p] = ns
  end
  return new_state
end

--- Restore a state_dict (from this optimizer or one built the same way: same
-- number of groups and of parameters in each, same shapes). The groups' values
-- are taken from it; the group tables and opt.state stay the same tables.
function Optimizer:load_state_dict(sd)
  local new_state = prepare_load(self, sd)
  for gi, g in ipairs(self.groups) do
    local params, name = g.params, g.name
    for k in pairs(g) do g[k] = nil end
    for k, v in pairs(sd.param_groups[gi]) do
      if k ~= "params" then g[k] = copy(v) end
    end
    for k, v in pairs(self.defaults) do
      if g[k] == nil then g[k] = copy(v) end
    end
    if g.name == nil then g.name = name end
    g.params = params
  end
  for p in pairs(self.state) do rawset(self.state, p, nil) end
  for p, s in pairs(new_state) do rawset(self.state, p, s) end
end

-- One line per group: "Adam: group 1 ('audio'): 4 tensors, lr=0.001 ...".
function Optimizer:__tostring()
  local lines = { ("%s (%d group%s)"):format(self.kind, #self.groups,
    #self.groups == 1 and "" or "s") }
  for i, g in ipairs(self.groups) do
    local parts = {}
    for _, k in ipairs(self._algo.options) do
      local v = g[k]
      if type(v) == "table" then v = "{" .. table.concat(v, ", ") .. "}" end
      parts[#parts + 1] = k .. "=" .. tostring(v)
    end
    local numel = 0
    for _, p in ipairs(g.params) do numel = numel + p:numel() end
    lines[#lines + 1] = ("  %s: %d tensors (%d values)%s %s"):format(label(i, g), #g.params,
      numel, is_frozen(g) and " frozen," or "", table.concat(parts, " "))
  end
  return table.concat(lines, "\n")
end

return optim
