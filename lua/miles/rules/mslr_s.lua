--- rules.mslr_s{lrs = {audio = 1e-3, image = 1e-4}, lambda = 0.5}: MSLR-S,
-- "smooth" (Yao and Mihalcea, Findings of ACL 2022; docs/BASELINES.md): the K rates
-- pulled toward their mean on a log scale, once, at setup:
--   log a_S(m) = (1 - lambda) log a_K(m) + lambda * mean_j log a_K(j),
-- the mean over the model's modalities. lambda in [0, 1] (0: MSLR-K, 1: every
-- modality at the geometric mean); the paper hand-picks values in [0.3, 0.7] and
-- gives no formula, so the formula and the default 0.5 are our choice. The fusion
-- group gets ctx.alpha; heads in probe mode.
local common = require "miles.rules.mslr_common"

return function(opts)
  opts = opts or {}
  local lambda = opts.lambda == nil and 0.5 or opts.lambda
  if type(lambda) ~= "number" or not (lambda >= 0 and lambda <= 1) then
    error("rules.mslr_s: lambda must be in [0, 1], got " .. tostring(lambda), 2)
  end
  local rule = common.rule("rules.mslr_s", opts, { lambda = true }, function(lrs, order)
    local mean = 0
    for _, name in ipairs(order) do mean = mean + math.log(lrs[name]) end
    mean = mean / #order
    local rates = {}
    for _, name in ipairs(order) do
      rates[name] = math.exp((1 - lambda) * math.log(lrs[name]) + lambda * mean)
    end
    return rates
  end)
  rule.lambda = lambda
  return rule
end
