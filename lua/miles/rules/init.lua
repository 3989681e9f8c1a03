--- miles.rules: scheduling rules as tables of hooks (docs/BASELINES.md).
--
-- A rule is a table with any of these fields (all optional):
--   name        a label for logs
--   head_mode   "loss" | "probe": the trainer sets the model's head mode to it
--   state       a table of JSON values the rule keeps between epochs; the trainer
--               saves it in checkpoints and restores it on resume (keep all
--               epoch-to-epoch memory here, not in upvalues)
--   setup(ctx)          before epoch 1 (initial group lrs, ...)
--   loss_weights(ctx)   each step, before backward -> {fused = w, <modality> = w, ...}
--                       (missing entries count as 1)
--   on_step(ctx)        after backward, before opt:step() (gradient modulation)
--   on_epoch_end(ctx)   after validation (group lrs, freezing, ctx.stop = true);
--                       what it writes in ctx.log (u = {name = u}, delta, action,
--                       reason) goes into the epoch's log row
--
--   local rules = require "miles.rules"
--   rules.get("miles", {tau = 0.2})   rules.get("vanilla")   rules.get(my_table)
--   rules.get("path/to/rule.lua", opts)  -- a file returning function(opts) -> hooks
local rules = {}

rules.vanilla = require "miles.rules.vanilla"
rules.miles = require "miles.rules.miles"

--- The rule named `r` (a built-in name or a Lua file returning function(opts) ->
-- hooks), a hooks table as it is, or a factory function called with opts.
function rules.get(r, opts)
  if type(r) == "table" then return r end
  if type(r) == "function" then return r(opts or {}) end
  if type(r) ~= "string" then error("rules.get: give a rule name, file or table, got " .. tostring(r), 2) end
  local builtin = rawget(rules, r)
  if type(builtin) == "function" and r ~= "get" then return builtin(opts or {}) end
  if r:find("%.lua$") or r:find("/", 1, true) then
    local chunk, err = loadfile(r)
    if not chunk then error("rules.get: cannot load rule file " .. r .. ": " .. tostring(err), 2) end
    local factory = chunk()
    if type(factory) == "function" then return factory(opts or {}) end
    if type(factory) == "table" then return factory end
    error("rules.get: rule file " .. r .. " must return function(opts) -> hooks", 2)
  end
  error("rules.get: unknown rule '" .. r .. "' (built in: vanilla, miles; or a .lua file)", 2)
end

--- Loss weights of 1 for the fused output and every modality in ctx.order.
function rules.unit_weights(ctx)
  local w = { fused = 1 }
  for _, name in ipairs(ctx.order) do w[name] = 1 end
  return w
end

return rules
