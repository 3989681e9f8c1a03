--- miles.rules: scheduling rules as tables of hooks (docs/BASELINES.md).
--
-- A rule is a table with any of these fields (all optional):
--   name        a label for logs
--   head_mode   "loss" | "probe": the trainer sets the model's head mode to it
--   state       a table of JSON values the rule keeps between epochs; the trainer
--               saves it in checkpoints and restores it on resume (keep all
--               epoch-to-epoch memory here, not in upvalues)
--   setup(ctx)          before epoch 1 (initial group lrs, ...)
--   on_epoch_start(ctx) before each epoch's training pass
--   loss_weights(ctx)   each step, before backward -> {fused = w, <modality> = w, ...}
--                       (missing entries count as 1)
--   on_step(ctx)        after backward, before opt:step() (gradient modulation);
--                       with the trainer's cuda_graph, captured with the step:
--                       keep its work on the device (no :item()) and count steps
--                       with miles.cuda_graph's on_replay (see rules/ogm.lua)
--   on_epoch_end(ctx)   after validation (group lrs, freezing, ctx.stop = true);
--                       what it writes in ctx.log (u = {name = u}, delta, action,
--                       reason) goes into the epoch's log row
--   finalize(ctx)       after the last epoch: return a state dict to use as the
--                       final weights instead of the best epoch's (MSES)
-- Rules can freeze, snapshot and restore parameter groups and train copies of
-- the model through ctx.trainer (see the top of lua/miles/train.lua).
--
--   local rules = require "miles.rules"
--   rules.get("miles", {tau = 0.2})   rules.get("vanilla")   rules.get(my_table)
--   rules.get("path/to/rule.lua", opts)  -- a file returning function(opts) -> hooks
--
-- Built-in rules are the files lua/miles/rules/<name>.lua (each returns
-- function(opts) -> hooks); rules.<name> loads one on first use.
local rules = {}

rules.BUILTIN = { "vanilla", "miles", "mses", "mslr_k", "mslr_s", "mslr_d", "ogm", "ogm_ge", "gblend" }

setmetatable(rules, { __index = function(t, name)
  if type(name) ~= "string" or not name:match("^[%w_]+$") then return nil end
  local ok, factory = pcall(require, "miles.rules." .. name)
  if not ok then
    if tostring(factory):find("module 'miles.rules." .. name .. "' not found", 1, true) then return nil end
    error(factory, 0)
  end
  rawset(t, name, factory)
  return factory
end })

-- The names of this module's own functions (not rules).
local LIBRARY = { get = true, check_opts = true, metric_reader = true, unit_weights = true }

--- The rule named `r` (a built-in name or a Lua file returning function(opts) ->
-- hooks), a hooks table as it is, or a factory function called with opts.
function rules.get(r, opts)
  if type(r) == "table" then return r end
  if type(r) == "function" then return r(opts or {}) end
  if type(r) ~= "string" then error("rules.get: give a rule name, file or table, got " .. tostring(r), 2) end
  local builtin = not r:find("[./]") and not LIBRARY[r] and rules[r]
  if type(builtin) == "function" then return builtin(opts or {}) end
  if r:find("%.lua$") or r:find("/", 1, true) then
    local chunk, err = loadfile(r)
    if not chunk then error("rules.get: cannot load rule file " .. r .. ": " .. tostring(err), 2) end
    local factory = chunk()
    if type(factory) == "function" then return factory(opts or {}) end
    if type(factory) == "table" then return factory end
    error("rules.get: rule file " .. r .. " must return function(opts) -> hooks", 2)
  end
  error("rules.get: unknown rule '" .. r .. "' (built in: " .. table.concat(rules.BUILTIN, ", ") ..
    "; or a .lua file)", 2)
end

--- Raise, at the caller of the rule's factory, when opts has a key that is not
-- in the set `known` (a misspelt option must not be ignored silently). level:
-- error's level as seen from the caller of check_opts (default 2: its caller).
function rules.check_opts(who, opts, known, level)
  for key in pairs(opts or {}) do
    if not known[key] then
      local names = {}
      for k in pairs(known) do names[#names + 1] = k end
      table.sort(names)
      error(("%s: unknown option '%s' (options: %s)"):format(who, tostring(key), table.concat(names, ", ")), (level or 2) + 1)
    end
  end
end

--- A function head -> the number `metric` (default ctx.metric) of that head in
-- ctx.metrics[source] ("val" or "train"); it raises, naming the rule, the split,
-- the metric and the head, when there is none.
function rules.metric_reader(who, ctx, source, metric)
  metric = metric or ctx.metric or "accuracy"
  local m = ctx.metrics[source]
  if not m then error(("%s: ctx.metrics.%s is missing"):format(who, source), 3) end
  return function(head)
    local r = m[head]
    local v = type(r) == "table" and r[metric] or r
    if type(v) ~= "number" then
      error(("%s: no %s metric '%s' for head '%s'"):format(who, source, metric, head), 2)
    end
    return v
  end
end

--- Loss weights of 1 for the fused output and every modality in ctx.order.
function rules.unit_weights(ctx)
  local w = { fused = 1 }
  for _, name in ipairs(ctx.order) do w[name] = 1 end
  return w
end

return rules
