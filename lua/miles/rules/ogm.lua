--- rules.ogm{alpha = 0.8, variant = "cvpr", modulation_start = 0, modulation_end = 50,
-- heads = "probe"}: on-the-fly gradient modulation, OGM (Peng et al., CVPR 2022;
-- official code GeWu-Lab/OGM-GE_CVPR2022; docs/BASELINES.md "OGM and OGM-GE").
-- rules/ogm_ge.lua is the same factory with the Gaussian noise switched on.
--
-- Each step (on_step: after backward, before the optimizer step) the rule splits
-- the fused logits per modality with the fusion head's own weights
-- (FusionModel:modality_logits, from the detached latents, under no_grad), takes
-- s_m = sum over the batch of softmax(out_m)[i, y_i], and from the scores a
-- coefficient k_m per modality:
--   "cvpr"  (default; two modalities a, b = ctx.order[1], [2]): rho_b = s_b / s_a;
--           if rho_b > 1 then k_b = 1 - tanh(alpha * rho_b), k_a = 1,
--           else k_a = 1 - tanh(alpha / rho_b), k_b = 1;
--   "tpami" (any number M >= 2): rho_m = mean over j ~= m of s_m / s_j;
--           k_m = max(0, 1 - alpha * tanh(rho_m - 1)) if rho_m > 1, else 1.
-- (A score of 0 leaves the ratio undefined: all k are 1 for that step.)
-- The gradients of each encoder's 4-D (convolution) weight tensors are multiplied
-- by k_m; batch norm, biases, linear layers, the heads and the fusion head are left
-- alone. OGM-GE then adds N(0, sd^2) noise to each such gradient, sd = the std of
-- that gradient before scaling + 1e-8, for every modality (k = 1 included).
--
-- Epochs: modulation_start and modulation_end use the official code's 0-based
-- epoch numbers (its defaults 0 and 50, inclusive), so published settings carry
-- over unchanged; the trainer's epochs are 1-based, so the rule modulates when
-- modulation_start <= ctx.epoch - 1 <= modulation_end (defaults: epochs 1..51).
-- alpha: the paper's alpha (0.1 to 0.8 in its experiments, 0.8 on CREMA-D;
-- default 0.8). heads: "probe" (default: only the fused loss trains the
-- encoders, as in the original) or "loss". Needs "concat" or "sum" fusion (setup
-- refuses any other) and one class label per sample.
-- Log: the epoch's mean k per modality goes into the row's action,
-- "k_audio=0.8123 k_image=1.0000" ("off" outside the window); ctx.log.k has the
-- means by name. on_step returns the step's k (a list in ctx.order of float64
-- scalar tensors on the model's device; nil outside the window).
--
-- Everything a step computes stays on the model's device: the scores, the
-- coefficients (in float64, as the same formulas in plain Lua would give), the
-- stds and the sums for the epoch's log, which is the one value read back, at the
-- epoch's end. So on a GPU a step waits for nothing, and the trainer's
-- cuda_graph = true captures the rule's step with the rest (each replay counted
-- through on_replay of require "miles.cuda_graph").
local core = require "miles.core"
local cuda_graph = require "miles.cuda_graph"
local F = require "miles.nn.functional"
local rules = require "miles.rules"

local KNOWN = { alpha = true, variant = true, modulation_start = true, modulation_end = true, heads = true }

-- The coefficients of the cvpr variant for the scores s = {s_a, s_b} (scalar
-- tensors; so are the k).
local function cvpr(alpha, s)
  local rho_b = s[2] / s[1]
  local above = rho_b:gt(1)
  return { core.where(above, 1, 1 - (rho_b:reciprocal() * alpha):tanh()),
           core.where(above, 1 - (rho_b * alpha):tanh(), 1) }
end

-- The coefficients of the tpami variant for the scores s = {s_1, ..., s_M}.
local function tpami(alpha, s)
  local k = {}
  for m = 1, #s do
    local sum
    for j = 1, #s do
      if j ~= m then sum = sum and sum + s[m] / s[j] or s[m] / s[j] end
    end
    local rho = sum / (#s - 1)
    k[m] = core.where(rho:gt(1), (1 - (rho - 1):tanh() * alpha):clamp(0, nil), 1)
  end
  return k
end

local VARIANTS = { cvpr = cvpr, tpami = tpami }

-- The factory; ge = true gives OGM-GE (rules/ogm_ge.lua).
return function(opts, ge)
  opts = opts or {}
  local who = ge and "rules.ogm_ge" or "rules.ogm"
  rules.check_opts(who, opts, KNOWN)
  local alpha = opts.alpha == nil and 0.8 or opts.alpha
  if type(alpha) ~= "number" or not (alpha > 0) or alpha == math.huge then
    error(who .. ": alpha must be a positive number, got " .. tostring(alpha), 2)
  end
  local variant = opts.variant or "cvpr"
  local coefficients = VARIANTS[variant]
  if not coefficients then
    error(who .. ": variant must be 'cvpr' or 'tpami', got " .. tostring(variant), 2)
  end
  local start, stop = opts.modulation_start or 0, opts.modulation_end or 50
  if math.type(start) ~= "integer" or start < 0 then
    error(who .. ": modulation_start must be an integer >= 0, got " .. tostring(start), 2)
  end
  if math.type(stop) ~= "integer" or stop < start then
    error(("%s: modulation_end must be an integer >= modulation_start (%d), got %s")
      :format(who, start, tostring(stop)), 2)
  end
  local heads = opts.heads or "probe"
  if heads ~= "probe" and heads ~= "loss" then
    error(who .. ": heads must be 'probe' or 'loss', got " .. tostring(heads), 2)
  end

  local rule = { name = ge and "ogm_ge" or "ogm", head_mode = heads, state = {}, alpha = alpha,
                 variant = variant, modulation_start = start, modulation_end = stop, noise = ge or false }
  -- Sums of k within the current epoch (for its log row; scalar tensors on the
  -- device, added to in place, so that a CUDA graph's replays add too); nothing
  -- here outlives the epoch, so a resume (always at an epoch boundary) loses
  -- nothing.
  local acc = { epoch = nil, n = 0, sum = {} }

  function rule.setup(ctx)
    local kind = ctx.model.fusion_kind
    if kind ~= "concat" and kind ~= "sum" then
      error(("%s: needs a 'concat' or 'sum' fusion head (per-modality logits from its weights), "
        .. "this model's fusion is a %s"):format(who, tostring(kind)), 2)
    end
    if variant == "cvpr" and #ctx.order ~= 2 then
      error(("%s: variant 'cvpr' is defined for two modalities, this model has %d; use variant = 'tpami'")
        :format(who, #ctx.order), 2)
    end
    if #ctx.order < 2 then
      error(("%s: needs two modalities or more (it compares their scores), this model has %d")
        :format(who, #ctx.order), 2)
    end
  end

  -- The coefficients k (a list in ctx.order) of this step's batch; all 1 when a
  -- score is not > 0 (the ratios undefined).
  local function step_coefficients(ctx)
    local y = ctx.batch.y
    if y:dim() ~= 1 then
      error(who .. ": needs one class label per sample (a softmax score), got labels of shape ["
        .. table.concat(y:shape(), "x") .. "]", 3)
    end
    return core.no_grad(function()
      local latents = {}
      for _, name in ipairs(ctx.order) do latents[name] = ctx.out.latents[name]:detach() end
      local logits = ctx.model:modality_logits(latents)
      local s = {}
      for i, name in ipairs(ctx.order) do
        s[i] = F.softmax(logits[name], 2):gather(2, y:unsqueeze(2)):sum():to("float64")
      end
      local valid = core.stack(s):min():gt(0) -- (false for a NaN score too)
      local k = coefficients(alpha, s)
      for i = 1, #k do k[i] = core.where(valid, k[i], 1) end
      return k
    end)
  end

  -- Scale (and for OGM-GE, noise) the 4-D weight gradients of each encoder.
  local function modulate(ctx, k)
    core.no_grad(function()
      for i, name in ipairs(ctx.order) do
        for _, p in ipairs(ctx.model.encoders[name]:parameters()) do
          local g = p.grad
          if g and g:dim() == 4 then
            local sd = ge and g:std() + 1e-8
            g:mul_(k[i]) -- (k in float64: the product rounded once, to g's dtype)
            if ge then g:add_(core.randn(g:shape(), { dtype = g:dtype(), device = g:device() }) * sd) end
          end
        end
      end
    end)
  end

  -- Count a step for the epoch's mean: now, or in a CUDA graph's capture at each
  -- replay (the capture itself runs nothing).
  local function count_step()
    if not cuda_graph.capturing() then
      acc.n = acc.n + 1
      return
    end
    cuda_graph.on_replay(function() acc.n = acc.n + 1 end, function()
      local n = acc.n
      return function() acc.n = n end
    end)
  end

  function rule.on_step(ctx)
    local e0 = ctx.epoch - 1
    if e0 < start or e0 > stop then return end
    local k = step_coefficients(ctx)
    modulate(ctx, k)
    if acc.epoch ~= ctx.epoch then
      -- (a sum made inside a capture would be zeroed again by each replay)
      if cuda_graph.capturing() then
        error(who .. ": an epoch's first step must run outside a CUDA graph capture", 2)
      end
      acc.epoch, acc.n, acc.sum = ctx.epoch, 0, {}
      for i, name in ipairs(ctx.order) do
        acc.sum[name] = core.zeros({}, { dtype = "float64", device = k[i]:device() })
      end
    end
    count_step()
    for i, name in ipairs(ctx.order) do acc.sum[name]:add_(k[i]) end
    return k
  end

  function rule.on_epoch_end(ctx)
    ctx.log = ctx.log or {}
    if acc.epoch ~= ctx.epoch or acc.n == 0 then
      ctx.log.action = "off"
      ctx.log.reason = ("epoch %d (0-based %d) is outside modulation_start..modulation_end = %d..%d")
        :format(ctx.epoch, ctx.epoch - 1, start, stop)
      return
    end
    local k, parts = {}, {}
    for i, name in ipairs(ctx.order) do
      k[name] = acc.sum[name]:item() / acc.n
      parts[i] = ("k_%s=%.4f"):format(name, k[name])
    end
    ctx.log.k, ctx.log.action = k, table.concat(parts, " ")
    ctx.log.reason = ("mean coefficient over %d steps"):format(acc.n)
  end

  return rule
end
