--- rules.miles{tau = 0.2, mu = 0.5, reset_other = false, metric = nil, source = "val"}:
-- MILES (the paper, Sec. III, Algorithm 1; docs/BASELINES.md "MILES"). Heads in
-- loss mode (Eq. 3: fused loss + one loss per head, all weight 1). After each
-- epoch, miles.decide gets the fused and per-head metric of ctx.metrics[source]
-- ("val" by default, "train" as in the paper's Table VI); modality i's group lr
-- becomes scale[i] * alpha, the fusion group keeps alpha. The previous scales
-- live in rule.state.prev (saved in checkpoints). metric: a key of the metrics
-- result (default: ctx.metric, the trainer's, "accuracy" unless set).
-- It records u (by modality), delta, action and reason in ctx.log. The decision
-- reads rule.tau, rule.mu and rule.reset_other at each epoch, so setting them
-- between epochs (t.rule.tau = 0.1 from the REPL) steers the next decision.
local core = require "miles.core"
local rules = require "miles.rules"

return function(opts)
  opts = opts or {}
  rules.check_opts("rules.miles", opts, { tau = true, mu = true, reset_other = true, source = true, metric = true })
  local tau = opts.tau == nil and 0.2 or opts.tau
  local mu = opts.mu == nil and 0.5 or opts.mu
  if type(tau) ~= "number" or tau ~= tau or tau < 0 or tau > 1 then
    error("rules.miles: tau must be in [0, 1], got " .. tostring(tau), 2)
  end
  if type(mu) ~= "number" or mu ~= mu or mu <= 0 or mu > 1 then
    error("rules.miles: mu must be in (0, 1], got " .. tostring(mu), 2)
  end
  local source = opts.source or "val"
  if source ~= "val" and source ~= "train" then
    error("rules.miles: source must be 'val' or 'train', got " .. tostring(source), 2)
  end
  local reset_other = opts.reset_other and true or false
  local rule = { name = "miles", head_mode = "loss", state = {},
                 tau = tau, mu = mu, reset_other = reset_other, source = source, metric = opts.metric }

  rule.loss_weights = rules.unit_weights

  function rule.on_epoch_end(ctx)
    local value = rules.metric_reader("rules.miles", ctx, source, rule.metric)
    local ms = {}
    for i, name in ipairs(ctx.order) do ms[i] = value(name) end
    local d = core.decide(value("fused"), ms, { tau = rule.tau, mu = rule.mu,
                                                reset_other = rule.reset_other, prev = rule.state.prev })
    local u = {}
    for i, name in ipairs(ctx.order) do
      u[name] = d.u[i]
      ctx.optimizer:set_lr(name, d.scale[i] * ctx.alpha)
    end
    rule.state.prev = { table.unpack(d.scale) }
    ctx.log = ctx.log or {}
    ctx.log.u, ctx.log.delta, ctx.log.action, ctx.log.reason = u, d.delta, d.action, d.reason
    return d
  end

  return rule
end
