--- The part shared by rules.mslr_k, mslr_s and mslr_d (Yao and Mihalcea, Findings
-- of ACL 2022; docs/BASELINES.md "MSLR-K, MSLR-S, MSLR-D"): the per-modality
-- rates opts.lrs = {modality = rate} (each modality's best unimodal rate, from a
-- sweep), checked, and a base rule whose setup gives each modality group its rate
-- and the fusion group the global rate ctx.alpha. Heads in probe mode (MSLR adds
-- no auxiliary loss).
--
--   local common = require "miles.rules.mslr_common"
--   local rule = common.rule("rules.mslr_s", opts, { lambda = true }, function(lrs, order) ... end)
local rules = require "miles.rules"

local common = {}

--- Give each modality in ctx.order the group lr rates[name], the fusion group ctx.alpha.
function common.set_rates(ctx, rates)
  for _, name in ipairs(ctx.order) do ctx.optimizer:set_lr(name, rates[name]) end
  ctx.optimizer:set_lr("fusion", ctx.alpha)
end

--- A rule named after `who` ("rules.mslr_k"), with head_mode "probe", state {},
-- rule.lrs (a copy of opts.lrs) and a setup that sets the group rates to
-- initial(lrs, ctx.order) (default: lrs as given) and keeps them in rule.rates.
-- extra: the option names besides lrs that the caller accepts. Errors are raised
-- at the level of the caller's caller (the user's rules.<name>{...} call).
function common.rule(who, opts, extra, initial)
  opts = opts or {}
  local known = { lrs = true }
  for k in pairs(extra or {}) do known[k] = true end
  rules.check_opts(who, opts, known, 3)
  local lrs = opts.lrs
  if type(lrs) ~= "table" or next(lrs) == nil then
    error(who .. ": give the per-modality rates, lrs = {modality = rate, ...} (each modality's best "
      .. "unimodal rate), got " .. tostring(lrs), 3)
  end
  local copy = {}
  for name, rate in pairs(lrs) do
    if type(rate) ~= "number" or not (rate > 0) or rate == math.huge then
      error(("%s: lrs.%s must be a positive number, got %s"):format(who, tostring(name), tostring(rate)), 3)
    end
    copy[name] = rate
  end
  local rule = { name = who:match("[%w_]+$"), head_mode = "probe", state = {}, lrs = copy }

  function rule.setup(ctx)
    for _, name in ipairs(ctx.order) do
      if copy[name] == nil then
        error(("%s: lrs has no rate for modality '%s'"):format(who, name), 2)
      end
    end
    rule.rates = initial and initial(copy, ctx.order) or copy
    common.set_rates(ctx, rule.rates)
  end

  return rule
end

return common
