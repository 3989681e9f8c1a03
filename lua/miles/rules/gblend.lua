--- rules.gblend{variant = "offline", probe_epochs = 5, held_out = 0.1, first = 10,
-- every = 5, floor = 1e-4}: G-Blend, gradient blending (Wang, Tran, Feiszli,
-- CVPR 2020; docs/BASELINES.md "G-Blend"). Heads in loss mode; the loss is
-- sum_i w_i L_i over the fused head and every unimodal head, sum w_i = 1.
--
-- Estimate: V = a `held_out` fraction of the training split (trainer:holdout,
-- from the trainer's seed), T = the rest. For each head i, a copy of the current
-- model (trainer:probe_run) is trained for `probe_epochs` epochs on T with head
-- i's loss alone; with L^T, L^V that head's mean losses on T and V before (N) and
-- after (N+n): O = L^V - L^T, dO = O_{N+n} - O_N, dG = L^V_N - L^V_{N+n}, and
-- w_i = (|dG_i| / max(|dO_i|, floor)^2) / Z (absolute values and the floor keep
-- the weights finite; Z = 0 gives equal weights).
--
-- Schedule (variant): "offline" (default): one estimate, at the start of epoch 1;
-- the main model trains on the whole training split. "online": estimates at the
-- start of epoch 1 and after every super-epoch (`first` epochs, then every
-- `every`: epochs 11, 16, 21, ... by default); the main model trains on T only,
-- so that V stays unseen. Until the first estimate the weights are equal.
--
-- rule.state.weights = {head = w} (saved in checkpoints); an estimate's epoch
-- logs action "blend fused=... audio=... image=...". The math is the pure
-- function rule.blend_weights(heads, curves) (see there); rule.due(epoch) is
-- the schedule.
local rules = require "miles.rules"

return function(opts)
  opts = opts or {}
  rules.check_opts("rules.gblend", opts, { variant = true, probe_epochs = true, first = true, every = true,
                                          held_out = true, floor = true })
  local variant = opts.variant or "offline"
  if variant ~= "offline" and variant ~= "online" then
    error("rules.gblend: variant must be 'offline' or 'online', got " .. tostring(variant), 2)
  end
  local function count(key, default)
    local v = opts[key] == nil and default or opts[key]
    if math.type(v) ~= "integer" or v < 1 then
      error(("rules.gblend: %s must be an integer >= 1, got %s"):format(key, tostring(v)), 3)
    end
    return v
  end
  local probe_epochs, first, every = count("probe_epochs", 5), count("first", 10), count("every", 5)
  local held_out = opts.held_out == nil and 0.1 or opts.held_out
  if type(held_out) ~= "number" or not (held_out > 0 and held_out < 1) then
    error("rules.gblend: held_out must be in (0, 1), got " .. tostring(held_out), 2)
  end
  local floor = opts.floor == nil and 1e-4 or opts.floor
  if type(floor) ~= "number" or not (floor > 0) then
    error("rules.gblend: floor must be > 0, got " .. tostring(floor), 2)
  end
  local rule = { name = "gblend", head_mode = "loss", state = {}, variant = variant,
                 probe_epochs = probe_epochs, held_out = held_out, first = first, every = every,
                 floor = floor }
  local kept, held -- T and V (dataset indices), from setup

  --- rule.blend_weights(heads, curves) -> weights, stats: curves[h] = {train =
  -- {L^T_N, L^T_{N+n}}, held_out = {L^V_N, L^V_{N+n}}}; weights[h] sums to 1;
  -- stats[h] = {dG =, dO =} (before the absolute value and the floor).
  function rule.blend_weights(heads, curves)
    local raw, stats, z = {}, {}, 0
    for _, h in ipairs(heads) do
      local c = curves[h]
      if not c then error("rules.gblend: no loss curve for head '" .. tostring(h) .. "'", 2) end
      local o0 = c.held_out[1] - c.train[1]
      local o1 = c.held_out[2] - c.train[2]
      local dO, dG = o1 - o0, c.held_out[1] - c.held_out[2]
      stats[h] = { dG = dG, dO = dO }
      local d = math.max(math.abs(dO), floor)
      raw[h] = math.abs(dG) / (d * d)
      z = z + raw[h]
    end
    local w = {}
    for _, h in ipairs(heads) do
      w[h] = (z > 0 and z < math.huge) and raw[h] / z or 1 / #heads
    end
    return w, stats
  end

  --- Is an estimate due at the start of this epoch?
  function rule.due(epoch)
    if epoch == 1 then return true end
    return variant == "online" and epoch > first and (epoch - 1 - first) % every == 0
  end

  local function heads_of(ctx)
    local heads = { "fused" }
    for _, n in ipairs(ctx.order) do heads[#heads + 1] = n end
    return heads
  end

  function rule.setup(ctx)
    kept, held = ctx.trainer:holdout(held_out)
    if variant == "online" then ctx.trainer:set_train_indices(kept) end
  end

  -- One estimate: a probe run per head, trained on that head's loss alone.
  local function estimate(ctx)
    local heads = heads_of(ctx)
    local curves = {}
    for _, h in ipairs(heads) do
      local w = {}
      for _, k in ipairs(heads) do w[k] = k == h and 1 or 0 end
      local run = ctx.trainer:probe_run{ epochs = probe_epochs, loss_weights = w, train = kept,
                                         held_out = held }
      local last = run.epochs[probe_epochs]
      curves[h] = { train = { run.start.train[h], last.train[h] },
                    held_out = { run.start.held_out[h], last.held_out[h] } }
    end
    return rule.blend_weights(heads, curves), heads
  end

  function rule.on_epoch_start(ctx)
    if not rule.due(ctx.epoch) then return end
    local w, heads = estimate(ctx)
    rule.state.weights = w
    local parts = {}
    for i, h in ipairs(heads) do parts[i] = ("%s=%.4f"):format(h, w[h]) end
    ctx.log.action = "blend " .. table.concat(parts, " ")
  end

  function rule.loss_weights(ctx)
    local w = rule.state.weights
    if w then return w end
    local heads = heads_of(ctx)
    w = {}
    for _, h in ipairs(heads) do w[h] = 1 / #heads end
    return w
  end

  return rule
end
