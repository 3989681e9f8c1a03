--- miles.sweep.unimodal(): the rule of the sweep's unimodal stage (MSLR's
-- pre-step, docs/BASELINES.md "MSLR"): heads in "loss" mode, the fused loss
-- weighted 0 and every modality's head loss 1. Each encoder then learns only from
-- its own head, independently of the others (separate parameters, per-parameter
-- Adam), so one run trains every modality's unimodal model at the same rate, and
-- the head's validation metric per epoch is that unimodal model's. The fusion
-- head gets no gradient (its metric stays at chance and means nothing here).
--
--   experiment.run{ dataset = "toy", rule = require("miles.sweep.unimodal")(), ... }
return function()
  return {
    name = "unimodal",
    head_mode = "loss",
    state = {},
    loss_weights = function(ctx)
      local w = { fused = 0 }
      for _, name in ipairs(ctx.order) do w[name] = 1 end
      return w
    end,
  }
end
