--- miles.train: the trainer (Eq. 3 of the paper with per-head weights, and the
-- rule hooks of docs/BASELINES.md).
--
--   local train = require "miles.train"
--   local t = train.Trainer{ model = m, dataset = ds, rule = rules.miles{},
--     lr = 1e-3, epochs = 10, batch_size = 64, seed = 0, workers = 2,
--     loader_opts = {normalize = ...}, metric = "accuracy",
--     log_dir = "runs/x", checkpoint = "runs/x/last.safetensors" }
--   local summary = t:fit()  -- {best_epoch, val = {...}, test = {fused, audio, image, delta}}
--   t:epoch()                -- one epoch by hand; t:evaluate("val"); t.history
--   t:lr("audio"); t:set_lr("audio", 1e-4)
--   local t2 = train.resume("runs/x/last.safetensors", same_args)  -- then t2:fit()
--
-- Each step: out = model(batch); w = rule.loss_weights(ctx); loss = w.fused *
-- L(fused) + sum_i w_i * L(head_i) (cross-entropy, or BCE-with-logits for
-- multi-label float labels); backward; rule.on_step(ctx); opt:step(). In the
-- model's "probe" head mode the heads read detached latents, so their losses
-- train the heads only. After the epoch every head is evaluated on "val", then
-- rule.on_epoch_end(ctx), one log row, the best epoch (by the fused val metric,
-- first maximum) is kept as an in-memory copy of the state dict, and a checkpoint
-- is written if asked (model, optimizer, rule.state, rng state, epoch, history,
-- best epoch; the best weights go to "<checkpoint without .safetensors>.best.safetensors").
--
-- ctx (given to every hook): trainer, model, optimizer, order (modality names),
-- alpha (the global lr), epoch, metric, metrics = {train = {fused = result,
-- <name> = result}, val = {...}} (metrics.Accumulator results), history, state
-- (= rule.state), log (what the rule wants in the row: u, delta, action, reason),
-- and during a step: batch, out, losses (tensors by head), loss (the total).
-- A rule may set ctx.stop = true in on_epoch_end to end fit early.
local core = require "miles.core"
local F = require "miles.nn.functional"
local optim = require "miles.optim"
local checkpoint = require "miles.checkpoint"
local rules = require "miles.rules"
local log = require "miles.log"

local train = {}

local Trainer = {}
Trainer.__index = Trainer
train.Trainer_class = Trainer

local KNOWN = { model = 1, dataset = 1, rule = 1, rule_opts = 1, lr = 1, epochs = 1, batch_size = 1,
                seed = 1, workers = 1, loader_opts = 1, metric = 1, log_dir = 1, checkpoint = 1,
                eval_batch_size = 1, quiet = 1 }

local NAN = 0 / 0

local function copy_state(sd)
  return core.no_grad(function()
    local out = {}
    for k, t in pairs(sd) do out[k] = t:detach():clone() end
    return out
  end)
end

--- train.Trainer{...}: see the top of the file.
function train.Trainer(args)
  assert(type(args) == "table", "train.Trainer: give {model = m, dataset = ds, ...}")
  for k in pairs(args) do
    if not KNOWN[k] then error("train.Trainer: unknown option '" .. tostring(k) .. "'", 2) end
  end
  assert(args.model and args.model.param_groups, "train.Trainer: model must be a fusion.Model")
  assert(args.dataset, "train.Trainer: give dataset")
  local self = setmetatable({}, Trainer)
  self.model, self.dataset = args.model, args.dataset
  self.rule = rules.get(args.rule or "vanilla", args.rule_opts)
  self.rule.state = self.rule.state or {}
  self.alpha = args.lr or 1e-3
  self.epochs = args.epochs or 10
  self.batch_size = args.batch_size or 64
  self.eval_batch_size = args.eval_batch_size or self.batch_size
  self.seed = args.seed or 0
  self.workers = args.workers or 2
  self.loader_opts = args.loader_opts or {}
  self.metric = args.metric or (self.rule.metric) or "accuracy"
  self.log_dir, self.checkpoint_path = args.log_dir, args.checkpoint
  self.order = self.model.order
  self.history = {}
  self.epoch_done = 0
  self.best_epoch, self.best_score, self.best_val, self.best_state = nil, -math.huge, nil, nil

  if self.rule.head_mode then self.model.head_mode = self.rule.head_mode end
  local labels = self.dataset.labels
  self.multilabel = labels ~= nil and core.is_tensor(labels) and labels:dim() == 2
  if self.multilabel and not args.metric then self.metric = "f1_macro" end

  core.manual_seed(self.seed)
  local groups = self.model:param_groups()
  self.group_names = {}
  for i, g in ipairs(groups) do self.group_names[i] = g.name end
  self.optimizer = optim.Adam(groups, { lr = self.alpha })

  self.ctx = { trainer = self, model = self.model, optimizer = self.optimizer, order = self.order,
               alpha = self.alpha, epoch = 0, metric = self.metric, metrics = {}, history = self.history,
               state = self.rule.state, log = {} }
  if self.rule.setup then self.rule.setup(self.ctx) end
  self.columns = self:_columns()
  if self.log_dir then self.logger = log.Logger(self.log_dir, self.columns) end
  return self
end

-- The log columns, in order.
function Trainer:_columns()
  local heads = { "fused" }
  for _, n in ipairs(self.order) do heads[#heads + 1] = n end
  local cols = { "epoch", "seconds", "train_loss" }
  for _, split in ipairs({ "train", "val" }) do
    for _, h in ipairs(heads) do cols[#cols + 1] = split .. "_loss_" .. h end
    for _, h in ipairs(heads) do cols[#cols + 1] = split .. "_" .. self.metric .. "_" .. h end
  end
  for _, n in ipairs(self.order) do cols[#cols + 1] = "u_" .. n end
  cols[#cols + 1] = "delta"
  cols[#cols + 1] = "action"
  cols[#cols + 1] = "head_gap_val"
  for _, g in ipairs(self.group_names) do cols[#cols + 1] = "lr_" .. g end
  return cols
end

function Trainer:_heads()
  local heads = { "fused" }
  for _, n in ipairs(self.order) do heads[#heads + 1] = n end
  return heads
end

function Trainer:_accumulators()
  local accs = {}
  for _, h in ipairs(self:_heads()) do
    accs[h] = core.metrics.Accumulator({ classes = self.model.classes, multilabel = self.multilabel or nil })
  end
  return accs
end

function Trainer:_loss(logits, y)
  if self.multilabel then return F.binary_cross_entropy_with_logits(logits, y) end
  return F.cross_entropy(logits, y)
end

function Trainer:_inputs(batch)
  local inputs = {}
  for _, n in ipairs(self.order) do inputs[n] = batch[n] end
  return inputs
end

function Trainer:_loader(split, shuffle)
  local o = {}
  for k, v in pairs(self.loader_opts) do o[k] = v end
  if not shuffle then o.augment = nil end
  o.batch_size = shuffle and self.batch_size or self.eval_batch_size
  o.shuffle = shuffle
  o.seed = self.seed
  o.workers = self.workers
  return self.dataset:loader(split, o)
end

--- Evaluate every head on a split: {fused = result, <name> = result, loss = {head = mean}}.
function Trainer:evaluate(split)
  split = split or "val"
  local was_training = self.model.training
  self.model:eval()
  local accs = self:_accumulators()
  local sums, n = {}, 0
  local heads = self:_heads()
  for _, h in ipairs(heads) do sums[h] = 0 end
  local loader = self:_loader(split, false)
  core.no_grad(function()
    for batch in loader:epoch(1) do
      local out = self.model(self:_inputs(batch))
      local bs = batch.y:shape()[1]
      for _, h in ipairs(heads) do
        local logits = h == "fused" and out.fused or out.heads[h]
        accs[h]:add(logits, batch.y)
        sums[h] = sums[h] + self:_loss(logits, batch.y):item() * bs
      end
      n = n + bs
    end
  end)
  loader:close()
  self.model:train(was_training)
  local res = { loss = {} }
  for _, h in ipairs(heads) do
    res[h] = accs[h]:result()
    res.loss[h] = n > 0 and sums[h] / n or NAN
  end
  return res
end

-- The metric values of one split's results by head.
function Trainer:_values(res)
  local v = {}
  for _, h in ipairs(self:_heads()) do
    local r = res[h]
    v[h] = r and r[self.metric]
    if type(v[h]) ~= "number" then v[h] = NAN end
  end
  return v
end

--- One epoch of training, validation, the rule's epoch hook, a log row, the best
-- model and a checkpoint. Returns the row.
function Trainer:epoch()
  local e = self.epoch_done + 1
  local ctx = self.ctx
  ctx.epoch, ctx.log, ctx.metrics = e, {}, {}
  local t0 = core.wall_time()
  local model, opt, rule = self.model, self.optimizer, self.rule
  model:train()
  local heads = self:_heads()
  local accs = self:_accumulators()
  local sums, total_sum, n = {}, 0, 0
  for _, h in ipairs(heads) do sums[h] = 0 end
  local loader = self:_loader("train", true)
  for batch in loader:epoch(e) do
    local out = model(self:_inputs(batch))
    local w = rule.loss_weights and rule.loss_weights(ctx) or {}
    local losses, total = {}, nil
    for _, h in ipairs(heads) do
      local logits = h == "fused" and out.fused or out.heads[h]
      local l = self:_loss(logits, batch.y)
      losses[h] = l
      local wh = w[h]
      if wh == nil then wh = 1 end
      if wh ~= 0 then
        local term = wh == 1 and l or l * wh
        total = total and (total + term) or term
      end
    end
    ctx.batch, ctx.out, ctx.losses, ctx.loss = batch, out, losses, total
    opt:zero_grad()
    if total then total:backward() end
    if rule.on_step then rule.on_step(ctx) end
    opt:step()
    local bs = batch.y:shape()[1]
    core.no_grad(function()
      for _, h in ipairs(heads) do
        accs[h]:add((h == "fused" and out.fused or out.heads[h]):detach(), batch.y)
        sums[h] = sums[h] + losses[h]:item() * bs
      end
      if total then total_sum = total_sum + total:item() * bs end
    end)
    n = n + bs
  end
  loader:close()
  ctx.batch, ctx.out, ctx.losses, ctx.loss = nil, nil, nil, nil
  local tr = { loss = {} }
  for _, h in ipairs(heads) do
    tr[h] = accs[h]:result()
    tr.loss[h] = n > 0 and sums[h] / n or NAN
  end
  ctx.metrics.train = tr
  ctx.metrics.val = self:evaluate("val")
  -- the lrs this epoch ran with
  local lrs = {}
  for _, g in ipairs(self.group_names) do lrs[g] = opt:lr(g) end
  if rule.on_epoch_end then rule.on_epoch_end(ctx) end

  local row = { epoch = e, train_loss = n > 0 and total_sum / n or NAN }
  for _, split in ipairs({ "train", "val" }) do
    local res = ctx.metrics[split]
    local vals = self:_values(res)
    for _, h in ipairs(heads) do
      row[split .. "_loss_" .. h] = res.loss[h]
      row[split .. "_" .. self.metric .. "_" .. h] = vals[h]
    end
  end
  local lg = ctx.log or {}
  for _, nme in ipairs(self.order) do
    local u = lg.u and lg.u[nme]
    row["u_" .. nme] = type(u) == "number" and u or NAN
  end
  row.delta = type(lg.delta) == "number" and lg.delta or NAN
  row.action = lg.action
  local vv = self:_values(ctx.metrics.val)
  local hv = {}
  for i, nme in ipairs(self.order) do hv[i] = vv[nme] end
  row.head_gap_val = core.head_gap(hv)
  for _, g in ipairs(self.group_names) do row["lr_" .. g] = lrs[g] end
  self.epoch_done = e
  row.seconds = core.wall_time() - t0
  self.history[#self.history + 1] = row

  local score = vv.fused
  if score == score and score > self.best_score then
    self.best_score, self.best_epoch = score, e
    self.best_val = self:_summary_metrics(ctx.metrics.val)
    self.best_state = copy_state(model:state_dict())
  end
  if self.logger then self.logger:row(row) end
  if self.checkpoint_path then self:save(self.checkpoint_path) end
  return row
end

-- {fused =, <name> =, delta =} of one split's results (the chosen metric).
function Trainer:_summary_metrics(res)
  local v = self:_values(res)
  local out, hv = { fused = v.fused }, {}
  for i, n in ipairs(self.order) do out[n] = v[n]; hv[i] = v[n] end
  out.delta = core.head_gap(hv)
  return out
end

local function best_path(path)
  return (path:gsub("%.safetensors$", "")) .. ".best.safetensors"
end

--- Write a checkpoint: model, optimizer, rule state, rng state, epoch, history,
-- best epoch (and the best weights beside it).
function Trainer:save(path)
  if self.best_state then
    local sd = self.best_state
    checkpoint.save(best_path(path), { model = { state_dict = function() return sd end },
                                       meta = { epoch = self.best_epoch } })
  end
  checkpoint.save(path, { model = self.model, optimizer = self.optimizer, meta = {
    epoch = self.epoch_done, history = self.history, rule_state = self.rule.state,
    rng = core.get_rng_state(), best_epoch = self.best_epoch,
    best_score = self.best_epoch and self.best_score or nil, best_val = self.best_val,
    metric = self.metric, alpha = self.alpha } })
end

--- Restore a checkpoint written by save (into this trainer, built with the same args).
function Trainer:load(path)
  local meta = checkpoint.load(path, { model = self.model, optimizer = self.optimizer })
  self.epoch_done = meta.epoch or 0
  self.history = {}
  for i, r in ipairs(meta.history or {}) do self.history[i] = r end
  self.ctx.history = self.history
  local st = self.rule.state
  for k in pairs(st) do st[k] = nil end
  for k, v in pairs(meta.rule_state or {}) do st[k] = v end
  if meta.rng then core.set_rng_state(meta.rng) end
  self.best_epoch, self.best_val = meta.best_epoch, meta.best_val
  self.best_score = meta.best_score or -math.huge
  self.best_state = nil
  if self.best_epoch then
    local got
    checkpoint.load(best_path(path), { model = { load_state_dict = function(_, sd) got = sd end } })
    self.best_state = copy_state(got)
  end
  if self.logger then self.logger:replay(self.history) end
  return meta
end

--- Train the remaining epochs, then evaluate the best model (loaded into the
-- model) on "test". Returns {best_epoch, val = {fused, <name>..., delta}, test = {...}}.
function Trainer:fit()
  while self.epoch_done < self.epochs do
    self:epoch()
    if self.ctx.stop then break end
  end
  if self.best_state then self.model:load_state_dict(self.best_state) end
  local summary = { best_epoch = self.best_epoch, val = self.best_val, metric = self.metric,
                    rule = self.rule.name, epochs = self.epoch_done }
  local ok = pcall(self.dataset.split, self.dataset, "test")
  if ok then summary.test = self:_summary_metrics(self:evaluate("test")) end
  self.summary = summary
  if self.logger then self.logger:summary(summary) end
  return summary
end

--- The learning rate of a group (by name), and setting it (for the REPL).
function Trainer:lr(name) return self.optimizer:lr(name) end
function Trainer:set_lr(name, v) return self.optimizer:set_lr(name, v) end

--- train.toy_dataset{n = 256, classes = 4, seed = 0, noise_a = 0.3, signal_b = 0.5}:
-- a tiny synthetic two-modality data set for specs and demos. Each sample of
-- class c has two 1x8x8 arrays: "audio" holds the class pattern (a bright row
-- band at a class-dependent place) plus weak noise (a clean, dominant modality),
-- "image" the same pattern scaled by signal_b plus unit noise (a weak one).
-- Labels cycle 1..C; splits: train 50%, val 25%, test 25% (random, seeded).
function train.toy_dataset(o)
  o = o or {}
  local n, C = o.n or 256, o.classes or 4
  local data = require "miles.data"
  local saved = core.get_rng_state()
  core.manual_seed(o.seed or 0)
  local pat, lab = {}, {}
  for i = 1, n do
    local c = (i - 1) % C + 1
    lab[i] = c
    local img = {}
    for r = 1, 8 do
      local row = {}
      local on = (r - 1) % C + 1 == c
      for q = 1, 8 do row[q] = on and 1.0 or 0.0 end
      img[r] = row
    end
    pat[i] = { img }
  end
  local P = core.tensor(pat, { dtype = "float32" })
  local a = P + core.randn(n, 1, 8, 8) * (o.noise_a or 0.3)
  local b = P * (o.signal_b or 0.5) + core.randn(n, 1, 8, 8)
  local y = core.tensor(lab, { dtype = "int64" })
  local q = math.floor(n / 4)
  local splits = data.random_split(n, { train = n - 2 * q, val = q, test = q }, o.seed or 0)
  core.set_rng_state(saved)
  return data.Dataset{ modalities = { audio = a, image = b }, labels = y, splits = splits }
end

--- train.resume(path, args): a Trainer built from args and restored from path.
function train.resume(path, args)
  local t = train.Trainer(args)
  t:load(path)
  return t
end

return train
