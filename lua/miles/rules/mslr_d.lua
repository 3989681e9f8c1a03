--- rules.mslr_d{lrs = {audio = 1e-3, image = 1e-4}, window = 5, metric = nil}:
-- MSLR-D, "dynamic" (Yao and Mihalcea, Findings of ACL 2022; docs/BASELINES.md).
-- Starts from the K rates a_0 = lrs. After each epoch t, for each modality m:
--   a_t(m) = a_0(m) * r_t(m),  r_t(m) = M_t(m) / mean of M over the previous `window` epochs,
-- M the validation metric of m's probe head (metric: a key of the metrics result,
-- default ctx.metric). Not cumulative: always a_0 times this epoch's ratio. Until
-- `window` past values exist the rate stays a_0; when their mean is 0 the update is
-- skipped (the rate stays as it is). The fusion group keeps ctx.alpha; heads in
-- probe mode. The last `window` values per modality live in rule.state.hist (saved
-- in checkpoints). The row's action reads "r_audio=1.0213 r_image=wait(3/5)"
-- (skip(mean 0) when skipped); ctx.log.r has the ratios applied.
local common = require "miles.rules.mslr_common"

return function(opts)
  opts = opts or {}
  local window = opts.window or 5
  if math.type(window) ~= "integer" or window < 1 then
    error("rules.mslr_d: window must be a positive integer, got " .. tostring(window), 2)
  end
  local rule = common.rule("rules.mslr_d", opts, { window = true, metric = true })
  rule.window, rule.metric = window, opts.metric

  function rule.on_epoch_end(ctx)
    local metric = rule.metric or ctx.metric or "accuracy"
    local val = ctx.metrics.val
    if not val then error("rules.mslr_d: ctx.metrics.val is missing", 2) end
    local hist = rule.state.hist or {}
    rule.state.hist = hist
    local values = {}
    for i, name in ipairs(ctx.order) do
      local res = val[name]
      values[i] = type(res) == "table" and res[metric] or res
      if type(values[i]) ~= "number" then
        error(("rules.mslr_d: no val metric '%s' for head '%s'"):format(metric, name), 2)
      end
    end
    local parts, r = {}, {}
    for i, name in ipairs(ctx.order) do
      local v = values[i]
      local past = hist[name] or {}
      if #past < window then
        parts[i] = ("r_%s=wait(%d/%d)"):format(name, #past, window)
      else
        local mean = 0
        for _, x in ipairs(past) do mean = mean + x end
        mean = mean / #past
        if mean == 0 then
          parts[i] = ("r_%s=skip(mean 0)"):format(name)
        else
          r[name] = v / mean
          ctx.optimizer:set_lr(name, rule.lrs[name] * r[name])
          parts[i] = ("r_%s=%.4f"):format(name, r[name])
        end
      end
      past[#past + 1] = v
      if #past > window then table.remove(past, 1) end
      hist[name] = past
    end
    ctx.log = ctx.log or {}
    ctx.log.r, ctx.log.action = r, table.concat(parts, " ")
  end

  return rule
end
