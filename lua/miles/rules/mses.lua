--- rules.mses{patience = 5, metric = nil, source = "val"}: MSES, modality-specific
-- early stopping (Fujimori et al., ACPR 2019, as MSLR and MILES describe it;
-- docs/BASELINES.md "MSES"). One global rate; heads in loss mode, all loss
-- weights 1 (multitask). Branches: each modality (its encoder and head, scored
-- by its head's metric) and "fusion" (the fusion head, scored by the fused
-- metric). After each epoch, a branch whose metric beats its best (strictly)
-- gets a snapshot of its weights (trainer:snapshot_group); after `patience`
-- epochs without that, it is restored to the snapshot and frozen
-- (trainer:freeze_group: lr 0, no gradients, batch-norm statistics kept). When
-- every branch is frozen the run stops (ctx.stop). finalize: the final model is
-- every branch's best weights. metric: a key of the metrics result (default
-- ctx.metric); source: "val" (default) or "train". State per branch in
-- rule.state.branches[name] = {best, best_epoch, wait, frozen}; ctx.log.action
-- names the branches frozen this epoch ("freeze audio,fusion").
local rules = require "miles.rules"

return function(opts)
  opts = opts or {}
  rules.check_opts("rules.mses", opts, { patience = true, metric = true, source = true })
  local patience = opts.patience == nil and 5 or opts.patience
  if math.type(patience) ~= "integer" or patience < 1 then
    error("rules.mses: patience must be an integer >= 1, got " .. tostring(patience), 2)
  end
  local source = opts.source or "val"
  if source ~= "val" and source ~= "train" then
    error("rules.mses: source must be 'val' or 'train', got " .. tostring(source), 2)
  end
  local rule = { name = "mses", head_mode = "loss", state = {}, patience = patience, source = source,
                 metric = opts.metric }

  -- The branches in order: the modalities, then "fusion".
  local function branches(ctx)
    local list = { table.unpack(ctx.order) }
    list[#list + 1] = "fusion"
    return list
  end

  rule.loss_weights = rules.unit_weights

  function rule.on_epoch_end(ctx)
    local value = rules.metric_reader("rules.mses", ctx, source, rule.metric)
    local st = rule.state
    st.branches = st.branches or {}
    local frozen_now, all_frozen = {}, true
    for _, name in ipairs(branches(ctx)) do
      local b = st.branches[name]
      if not b then
        b = { best = -math.huge, wait = 0, frozen = false }
        st.branches[name] = b
      end
      if not b.frozen then
        local head = name == "fusion" and "fused" or name
        local v = value(head)
        if v > b.best then
          b.best, b.best_epoch, b.wait = v, ctx.epoch, 0
          ctx.trainer:snapshot_group(name)
        else
          b.wait = b.wait + 1
          if b.wait >= patience then
            ctx.trainer:restore_group(name)
            ctx.trainer:freeze_group(name)
            b.frozen = true
            frozen_now[#frozen_now + 1] = name
          end
        end
      end
      all_frozen = all_frozen and b.frozen
    end
    if #frozen_now > 0 then ctx.log.action = "freeze " .. table.concat(frozen_now, ",") end
    if all_frozen then
      ctx.stop = true
      ctx.log.reason = "every branch is frozen"
    end
  end

  -- The model's current state with every branch's best snapshot over it.
  function rule.finalize(ctx)
    local t = ctx.trainer
    local sd = {}
    for k, v in pairs(t.model:state_dict()) do sd[k] = v end
    for _, name in ipairs(branches(ctx)) do
      for k, v in pairs(t.snapshots[name] or {}) do sd[k] = v end
    end
    return sd
  end

  return rule
end
