--- rules.vanilla{heads = "probe"}: joint training on the fused loss with one global
-- rate (docs/BASELINES.md "Vanilla"). heads = "probe" (default): each unimodal
-- head is trained on the detached latent, so only the fused loss trains the
-- encoders; heads = "loss": the heads' losses train the encoders too (Eq. 3,
-- MILES with mu = 1).
local rules = require "miles.rules"

return function(opts)
  opts = opts or {}
  rules.check_opts("rules.vanilla", opts, { heads = true })
  local heads = opts.heads or "probe"
  if heads ~= "probe" and heads ~= "loss" then
    error("rules.vanilla: heads must be 'probe' or 'loss', got " .. tostring(heads), 2)
  end
  return {
    name = "vanilla",
    head_mode = heads,
    state = {},
    loss_weights = rules.unit_weights,
  }
end
