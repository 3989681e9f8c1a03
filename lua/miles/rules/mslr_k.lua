--- rules.mslr_k{lrs = {audio = 1e-3, image = 1e-4}}: MSLR-K, "keep" (Yao and
-- Mihalcea, Findings of ACL 2022; docs/BASELINES.md "MSLR-K, MSLR-S, MSLR-D"):
-- each modality's group keeps its best unimodal rate lrs[name] for the whole run;
-- the fusion group gets the global rate ctx.alpha. Heads in probe mode. Every
-- modality in the model needs a rate (setup names the one missing).
local common = require "miles.rules.mslr_common"

return function(opts)
  local rule = common.rule("rules.mslr_k", opts)  -- not a tail call: errors name the user's line
  return rule
end
