--- miles.train: the trainer (Eq. 3 of the paper with per-head weights, and the
-- rule hooks of docs/BASELINES.md).
--
--   local train = require "miles.train"
--   local t = train.Trainer{ model = m, dataset = ds, rule = rules.miles{},
--     lr = 1e-3, epochs = 10, batch_size = 64, seed = 0, workers = 2,
--     loader_opts = {normalize = ...}, metric = "accuracy",
--     log_dir = "runs/x", checkpoint = "runs/x/last.safetensors",
--     quiet = false, stream = io.stderr, device = "cpu" }
--   local summary = t:fit()  -- {best_epoch, val = {...}, test = {fused, audio, image, delta}, weights}
--   t:epoch()                -- one epoch by hand; t:evaluate("val"); t.history
--   t:lr("audio"); t:set_lr("audio", 1e-4)
--   local t2 = train.resume("runs/x/last.safetensors", same_args)  -- then t2:fit()
--
-- Each step: out = model(batch); w = rule.loss_weights(ctx); loss = w.fused *
-- L(fused) + sum_i w_i * L(head_i) (cross-entropy, or BCE-with-logits for
-- multi-label float labels); backward; rule.on_step(ctx); opt:step(). In the
-- model's "probe" head mode the heads read detached latents, so their losses
-- train the heads only. Each epoch: rule.on_epoch_start(ctx), the training pass
-- (a progress bar "epoch e/E" with ETA), every head evaluated on "val",
-- rule.on_epoch_end(ctx), one log row and one summary line (val metric of every
-- head, u/delta/action when logged, seconds); the best epoch (by the fused val
-- metric, first maximum) is kept as an in-memory copy of the state dict; a
-- checkpoint is written if asked. quiet = true silences the bar and the lines
-- (MILES_PROGRESS=0 in the environment does too, unless quiet = false). In a
-- log file (not a terminal) the bar prints plain lines at 0, 10, ... 100%.
-- device = "cuda" moves the model there (in place) and each batch as it comes;
-- cuda_graph = true then replays each training step as one captured CUDA graph
-- (miles.train_graph: for small models, whose steps are bound by kernel launches).
-- autocast = true runs each epoch (training, evaluations, the rule's hooks) and
-- evaluate() under bf16 autocast (miles.autocast): activations in bfloat16, the
-- weights, their gradients, the losses and the metrics in float32; false runs
-- them without; unset leaves the switch as the caller set it.
--
-- A checkpoint (one safetensors file, atomic) holds the model, the optimizer, the
-- best epoch's weights ("best/<key>"), the rules' group snapshots
-- ("snapshot/<tag>/<key>"), and as JSON: epoch, history, rule.state, rng state,
-- best epoch, frozen groups, whether a rule stopped the run. The best weights are
-- also exported to "<checkpoint without .safetensors>.best.safetensors" when
-- they change (not read back: resume uses the checkpoint alone).
--
-- Rule hooks (see miles.rules; all optional):
--   setup(ctx)          at construction (also when resuming, before the state is
--                       restored: keep it cheap and deterministic)
--   on_epoch_start(ctx) before the training pass of epoch ctx.epoch (e.g. G-Blend
--                       estimates its loss weights here); what it writes in ctx.log
--                       goes into the row
--   loss_weights(ctx), on_step(ctx), on_epoch_end(ctx) (ctx.stop = true ends fit)
--   finalize(ctx)       by fit, after the last epoch and before the test
--                       evaluation: a state dict (name -> tensor) to use as the
--                       final weights instead of the best epoch's (nil: keep those)
--
-- ctx (given to every hook): trainer, model, optimizer, order (modality names),
-- alpha (the global lr), epoch, metric, metrics = {train = {fused = result,
-- <name> = result, loss = {head = mean}}, val = {...}} (metrics.Accumulator
-- results), history, state (= rule.state), log (what the rule wants in the row:
-- u, delta, action, reason), and during a step: batch, out, losses (tensors by
-- head), loss (the total).
--
-- What rules may call on ctx.trainer (groups are the optimizer's: each modality
-- = its encoder and head, and "fusion" = the fusion head; their state-dict keys
-- are "encoders.<name>.*" + "heads.<name>.*", and "fusion_head.*"):
--   t:group_state(name)          {key -> tensor}: the group's parameters and
--                                persistent buffers (live views)
--   t:snapshot_group(name, tag)  keep a copy under tag (default name) in
--                                t.snapshots; saved in checkpoints
--   t:restore_group(name, tag)   copy a snapshot back into the model
--   t:freeze_group(name)         lr 0 (the optimizer skips the group whole: no
--                                Adam moments, no weight decay; a later set_lr
--                                does not undo that), no gradients
--                                (requires_grad false) and the group's modules in
--                                eval mode during training (batch-norm running
--                                statistics kept, dropout off); kept on resume
--   t:unfreeze_group(name)       undo it (the lr from before the freeze)
--   t:clone_model()              a deep copy of the model
--   t:holdout(fraction)          kept, held: the training split divided at random
--                                (from the trainer's seed)
--   t:set_train_indices(idx)     train on these dataset indices instead of the
--                                "train" split (nil: the split); call from setup
--   t:probe_run{...}             train a copy for a few epochs (see there)
local core = require "miles.core"
local F = require "miles.nn.functional"
local train_graph = require "miles.train_graph"
local optim = require "miles.optim"
local checkpoint = require "miles.checkpoint"
local rules = require "miles.rules"
local log = require "miles.log"
local progress = require "miles.progress"
local data = require "miles.data"

local train = {}

local Trainer = {}
Trainer.__index = Trainer
train.Trainer_class = Trainer

local KNOWN = { model = 1, dataset = 1, rule = 1, rule_opts = 1, lr = 1, epochs = 1, batch_size = 1,
                seed = 1, workers = 1, loader_opts = 1, metric = 1, log_dir = 1, checkpoint = 1,
                eval_batch_size = 1, quiet = 1, stream = 1, device = 1, cuda_graph = 1,
                autocast = 1 }

local NAN = 0 / 0

local function copy_state(sd)
  return core.no_grad(function()
    local out = {}
    for k, t in pairs(sd) do out[k] = t:detach():clone() end
    return out
  end)
end

--- train.clone_module(m): a deep copy of a module tree (nn.Module:clone).
function train.clone_module(m)
  return m:clone()
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
  self.device = args.device or "cpu"
  self.cuda_graph = args.cuda_graph or false
  if self.cuda_graph and self.device == "cpu" then
    error("train.Trainer: cuda_graph needs a GPU device (device = 'cuda'), not the cpu", 2)
  end
  if self.device ~= "cpu" then self.model:to(self.device) end
  self.autocast = args.autocast
  if self.autocast ~= nil and type(self.autocast) ~= "boolean" then
    error("train.Trainer: autocast must be a boolean, got " .. type(self.autocast), 2)
  end
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
  self.quiet = args.quiet
  if self.quiet == nil and os.getenv("MILES_PROGRESS") == "0" then self.quiet = true end
  self.stream = args.stream or io.stderr
  self.order = self.model.order
  self.history = {}
  self.epoch_done = 0
  self.best_epoch, self.best_score, self.best_val, self.best_state = nil, -math.huge, nil, nil
  self.frozen, self.snapshots = {}, {}

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
  local heads = self:_heads()
  local cols = { "epoch", "seconds", "train_loss" }
  for _, split in ipairs({ "train", "val" }) do
    for _, h in ipairs(heads) do cols[#cols + 1] = split .. "_loss_" .. h end
    for _, h in ipairs(heads) do cols[#cols + 1] = split .. "_" .. self.metric .. "_" .. h end
  end
  for _, n in ipairs(self.order) do cols[#cols + 1] = "u_" .. n end
  cols[#cols + 1] = "delta"
  cols[#cols + 1] = "action"
  cols[#cols + 1] = "reason"
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

-- The model's inputs of a batch, on the trainer's device (batch.y is moved there
-- too; the copies to a GPU do not wait for it).
function Trainer:_inputs(batch)
  local inputs = {}
  for _, n in ipairs(self.order) do inputs[n] = batch[n]:to(self.device) end
  batch.y = batch.y:to(self.device)
  return inputs
end

-- A loader over a split (a name or dataset indices); shuffled (and augmented)
-- for training, in order for evaluation.
function Trainer:_loader(split, shuffle)
  local o = {}
  for k, v in pairs(self.loader_opts) do o[k] = v end
  if not shuffle then o.augment = nil end
  o.batch_size = shuffle and self.batch_size or self.eval_batch_size
  o.shuffle = shuffle
  o.seed = self.seed
  o.workers = self.workers
  if o.pin_memory == nil then o.pin_memory = self.device ~= "cpu" end
  return self.dataset:loader(split, o)
end

-- {head = metrics result, loss = {head = mean loss}} from accumulators and loss sums.
-- Per-head metrics and mean losses of a pass, from the batches' detached logits
-- and losses. They are read (tensor -> number) a bunch of batches at a time, in
-- the order they came, each kind joined into one tensor first: reading each
-- batch's values would make the host wait for the GPU at every step, and every
-- read of a GPU value is a wait; the numbers are the same either way.
local Tally = {}
Tally.__index = Tally
local TALLY_BATCHES = 64

function Trainer:_tally()
  local t = setmetatable({ heads = self:_heads(), accs = self:_accumulators(), sums = {}, total = 0,
                           n = 0, pending = {} }, Tally)
  for _, h in ipairs(t.heads) do t.sums[h] = 0 end
  return t
end

-- logits and losses: head -> tensor (detached); total: the weighted loss or nil.
-- (bf16 logits, from autocast, are scored as float32.)
function Tally:add(logits, losses, total, y)
  for h, l in pairs(logits) do
    if l:dtype() == "bfloat16" then logits[h] = l:float() end
  end
  self.pending[#self.pending + 1] = { logits = logits, losses = losses, total = total, y = y }
  if #self.pending >= TALLY_BATCHES then self:_flush() end
end

-- The batches' values of one kind (rows joined, or scalars stacked).
local function joined(pending, get, stack)
  local ts = {}
  for i, b in ipairs(pending) do ts[i] = get(b) end
  if #ts == 1 and not stack then return ts[1] end
  return stack and core.stack(ts) or core.cat(ts, 1)
end

-- Each loss (per row, weighted by its batch's rows) added to sum, in order.
local function add_losses(sum, losses, sizes)
  local v = losses:cpu():totable()
  for i, bs in ipairs(sizes) do sum = sum + v[i] * bs end
  return sum
end

function Tally:_flush()
  local p = self.pending
  if #p == 0 then return end
  local sizes = {}
  for i, b in ipairs(p) do
    sizes[i] = b.y:shape()[1]
    self.n = self.n + sizes[i]
  end
  local y = joined(p, function(b) return b.y end):cpu()
  for _, h in ipairs(self.heads) do
    self.accs[h]:add(joined(p, function(b) return b.logits[h] end), y)
    self.sums[h] = add_losses(self.sums[h], joined(p, function(b) return b.losses[h] end, true), sizes)
  end
  -- (a batch whose loss weights are all 0 has no total)
  local with_total, total_sizes = {}, {}
  for i, b in ipairs(p) do
    if b.total then
      with_total[#with_total + 1] = b
      total_sizes[#total_sizes + 1] = sizes[i]
    end
  end
  if #with_total > 0 then
    self.total = add_losses(self.total, joined(with_total, function(b) return b.total end, true),
      total_sizes)
  end
  self.pending = {}
end

-- The pass's results ({head = metrics, loss = {head = mean}}) and its mean total loss.
function Tally:results()
  self:_flush()
  local res = { loss = {} }
  for _, h in ipairs(self.heads) do
    res[h] = self.accs[h]:result()
    res.loss[h] = self.n > 0 and self.sums[h] / self.n or NAN
  end
  return res, self.n > 0 and self.total / self.n or NAN
end

-- Every head of `model` evaluated on a split (a name or dataset indices).
function Trainer:_evaluate(model, split)
  local was_training = model.training
  model:eval()
  local tally = self:_tally()
  local loader = self:_loader(split, false)
  core.no_grad(function()
    for batch in loader:epoch(1) do
      local out = model(self:_inputs(batch))
      local logits, losses = {}, {}
      for _, h in ipairs(tally.heads) do
        logits[h] = h == "fused" and out.fused or out.heads[h]
        losses[h] = self:_loss(logits[h], batch.y)
      end
      tally:add(logits, losses, nil, batch.y)
    end
  end)
  loader:close()
  model:train(was_training)
  return (tally:results())
end

-- f(...) with bf16 autocast on or off as the trainer's option says (when given),
-- then as it was.
function Trainer:_autocast(f, ...)
  if self.autocast == nil then return f(...) end
  return core.autocast(self.autocast, f, ...)
end

--- Evaluate every head on a split: {fused = result, <name> = result, loss = {head = mean}}.
function Trainer:evaluate(split)
  return self:_autocast(self._evaluate, self, self.model, split or "val")
end

-- Training mode for `model`, with the frozen groups' modules in eval mode.
function Trainer:_set_train_mode(model)
  model:train()
  for name in pairs(self.frozen) do
    for _, pm in ipairs(model:group_modules(name)) do pm[2]:eval() end
  end
end

-- One training step of `model` on inputs (name -> tensor on the device) and labels
-- y: forward, the loss weighted by w (a missing head counts 1, 0 leaves it out),
-- backward, p.on_step(p.ctx), the optimizer's step. p.ctx gets out, losses and
-- loss. Returns the heads' detached logits and losses and the detached total
-- loss (nil when every weight is 0).
function Trainer:_step(model, opt, inputs, y, w, p)
  local ctx = p.ctx
  local out = model(inputs)
  local heads = self:_heads()
  local losses, total = {}, nil
  for _, h in ipairs(heads) do
    local l = self:_loss(h == "fused" and out.fused or out.heads[h], y)
    losses[h] = l
    local wh = w[h]
    if wh == nil then wh = 1 end
    if wh ~= 0 then
      local term = wh == 1 and l or l * wh
      total = total and (total + term) or term
    end
  end
  ctx.out, ctx.losses, ctx.loss = out, losses, total
  opt:zero_grad()
  if total and total.requires_grad then total:backward() end
  if p.on_step then p.on_step(ctx) end
  opt:step()
  local logits, detached = {}, {}
  for _, h in ipairs(heads) do
    logits[h] = (h == "fused" and out.fused or out.heads[h]):detach()
    detached[h] = losses[h]:detach()
  end
  return logits, detached, total and total:detach()
end

-- One training pass of `model` over `loader` (epoch e of its order): for each
-- batch, the loss weights p.weights(ctx), then the step (Trainer:_step; replayed
-- as a CUDA graph with cuda_graph). p.ctx gets batch, out, losses and loss during
-- the step; p.bar (optional) is advanced. Returns the pass's results (as
-- _evaluate's) and its mean total loss.
function Trainer:_train_pass(model, opt, loader, e, p)
  self:_set_train_mode(model)
  local ctx = p.ctx
  local tally = self:_tally()
  local graph = self.cuda_graph and train_graph.new(self, model, opt, p) or nil
  local done = 0
  for batch in loader:epoch(e) do
    local w = p.weights and p.weights(ctx) or {}
    ctx.batch = batch
    if graph then
      tally:add(graph:step(batch, w))
    else
      local logits, losses, total = self:_step(model, opt, self:_inputs(batch), batch.y, w, p)
      tally:add(logits, losses, total, batch.y)
    end
    done = done + 1
    if p.bar then p.bar:update(done) end
  end
  if graph then graph:free() end -- (after an error, the collector frees it)
  loader:close()
  ctx.batch, ctx.out, ctx.losses, ctx.loss = nil, nil, nil, nil
  return tally:results()
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

--- One epoch of training, validation, the rule's epoch hooks, a log row, the best
-- model and a checkpoint. Returns the row.
function Trainer:epoch()
  return self:_autocast(self._epoch, self)
end

function Trainer:_epoch()
  local e = self.epoch_done + 1
  local ctx = self.ctx
  ctx.epoch, ctx.log, ctx.metrics = e, {}, {}
  local t0 = core.wall_time()
  local model, opt, rule = self.model, self.optimizer, self.rule
  if rule.on_epoch_start then rule.on_epoch_start(ctx) end
  local lrs = {} -- the lrs this epoch runs with
  for _, g in ipairs(self.group_names) do lrs[g] = opt:lr(g) end
  local loader = self:_loader(self.train_indices or "train", true)
  local bar = progress.new({ label = ("epoch %d/%d"):format(e, self.epochs), total = #loader,
                             quiet = self.quiet, stream = self.stream, sparse = true })
  local train_loss
  ctx.metrics.train, train_loss = self:_train_pass(model, opt, loader, e,
    { ctx = ctx, weights = rule.loss_weights, on_step = rule.on_step, bar = bar })
  bar:finish()
  ctx.metrics.val = self:evaluate("val")
  if rule.on_epoch_end then rule.on_epoch_end(ctx) end

  local heads = self:_heads()
  local row = { epoch = e, train_loss = train_loss }
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
  row.action, row.reason = lg.action, lg.reason
  local vv = self:_values(ctx.metrics.val)
  local hv = {}
  for i, nme in ipairs(self.order) do hv[i] = vv[nme] end
  row.head_gap_val = #hv >= 2 and core.head_gap(hv) or NAN
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
  self:_report(row)
  if self.checkpoint_path then self:save(self.checkpoint_path) end
  return row
end

-- The line printed after an epoch: train loss, the val metric of every head,
-- u/delta/action when the rule logged them, the seconds and the run's ETA.
function Trainer:_report(row)
  if self.quiet then return end
  local parts = { ("epoch %d/%d"):format(row.epoch, self.epochs), ("train loss %.4f"):format(row.train_loss) }
  local val = { "val " .. self.metric }
  for _, h in ipairs(self:_heads()) do
    val[#val + 1] = ("%s %.4f"):format(h, row["val_" .. self.metric .. "_" .. h])
  end
  parts[#parts + 1] = table.concat(val, " ")
  local u = {}
  for _, n in ipairs(self.order) do
    local x = row["u_" .. n]
    if x == x then u[#u + 1] = ("%s %.3f"):format(n, x) end
  end
  if #u > 0 then parts[#parts + 1] = "u " .. table.concat(u, " ") end
  if row.delta == row.delta then parts[#parts + 1] = ("delta %.3f"):format(row.delta) end
  if row.action then parts[#parts + 1] = tostring(row.action) end
  local time = ("%.1f s"):format(row.seconds)
  local left = self.epochs - row.epoch
  if left > 0 then
    local sum = 0
    for _, r in ipairs(self.history) do sum = sum + r.seconds end
    time = time .. ", ETA " .. progress.format_time(sum / #self.history * left)
  end
  parts[#parts + 1] = time
  self.stream:write(table.concat(parts, "  "), "\n")
  self.stream:flush()
end

-- {fused =, <name> =, delta =} of one split's results (the chosen metric).
function Trainer:_summary_metrics(res)
  local v = self:_values(res)
  local out, hv = { fused = v.fused }, {}
  for i, n in ipairs(self.order) do out[n] = v[n]; hv[i] = v[n] end
  out.delta = #hv >= 2 and core.head_gap(hv) or NAN
  return out
end

-- ---------------------------------------------------------------------------
-- Groups: state, snapshots, freezing (for rules; see the top of the file)

-- Raise (at the caller of the public method) unless name is a group.
function Trainer:_check_group(name, who)
  for _, g in ipairs(self.group_names) do
    if g == name then return end
  end
  error(("Trainer:%s: no group '%s' (groups: %s)"):format(who, tostring(name),
    table.concat(self.group_names, ", ")), 3)
end

--- The group's parameters and persistent buffers: {state-dict key -> tensor}
-- (views of the model's own tensors).
function Trainer:group_state(name)
  self:_check_group(name, "group_state")
  local sd = {}
  for _, pm in ipairs(self.model:group_modules(name)) do
    for k, t in pairs(pm[2]:state_dict()) do sd[pm[1] .. "." .. k] = t end
  end
  return sd
end

local function check_tag(tag, who)
  if type(tag) ~= "string" or not tag:match("^[%w_]+$") then
    error(("Trainer:%s: a snapshot tag is a name of letters, digits and '_', got %s"):format(who,
      tostring(tag)), 3)
  end
end

--- Keep a copy of the group's tensors under tag (default: the group's name).
function Trainer:snapshot_group(name, tag)
  tag = tag or name
  check_tag(tag, "snapshot_group")
  self.snapshots[tag] = copy_state(self:group_state(name))
end

--- Copy the snapshot `tag` (default: the group's name) back into the model.
function Trainer:restore_group(name, tag)
  tag = tag or name
  self:_check_group(name, "restore_group")
  local snap = self.snapshots[tag]
  if not snap then error(("Trainer:restore_group: no snapshot '%s'"):format(tostring(tag)), 2) end
  self.model:load_state_dict(snap, { strict = false })
end

-- Apply a freeze (or undo it) to the optimizer group and its parameters.
function Trainer:_freeze(name, on, lr)
  local g = self.optimizer:group(name)
  g.frozen, g.lr = on, lr
  for _, p in ipairs(g.params) do p.requires_grad = not on end
end

--- Freeze a group: lr 0, no gradients, its modules in eval mode while training.
function Trainer:freeze_group(name)
  self:_check_group(name, "freeze_group")
  if self.frozen[name] then return end
  self.frozen[name] = self.optimizer:lr(name)
  self:_freeze(name, true, 0)
  if self.model.training then
    for _, pm in ipairs(self.model:group_modules(name)) do pm[2]:eval() end
  end
end

--- Unfreeze a group: its lr from before the freeze, gradients, training mode
-- from the next pass.
function Trainer:unfreeze_group(name)
  self:_check_group(name, "unfreeze_group")
  local lr = self.frozen[name]
  if not lr then return end
  self.frozen[name] = nil
  self:_freeze(name, false, lr)
end

-- ---------------------------------------------------------------------------
-- Copies of the model (G-Blend's estimates)

--- A deep copy of the model (train.clone_module).
function Trainer:clone_model()
  return train.clone_module(self.model)
end

--- The training split's indices (int64) divided at random into kept and held
-- (round(fraction * n) of them), the same for the same trainer seed.
function Trainer:holdout(fraction)
  if type(fraction) ~= "number" or not (fraction > 0 and fraction < 1) then
    error("Trainer:holdout: fraction must be in (0, 1), got " .. tostring(fraction), 2)
  end
  local idx = self.dataset:split("train").indices
  local parts = data.random_split(idx:numel(), { kept = 1 - fraction, held = fraction }, self.seed)
  return idx:index_select(1, parts.kept), idx:index_select(1, parts.held)
end

--- Train on these dataset indices (int64) instead of the "train" split; nil
-- goes back to the split.
function Trainer:set_train_indices(idx)
  self.train_indices = idx
end

--- t:probe_run{epochs = n, loss_weights = {head = w} (missing: 1), train =
-- indices or split name (default "train"), held_out = indices or split name}:
-- trains a copy of the model, with a copy of the optimizer (its rates, state and
-- frozen groups), for n epochs on `train` with fixed loss weights (no on_step),
-- and measures every head's mean loss (eval mode) on `train` and `held_out`
-- before training and after each epoch. Returns {start = {train = {head =
-- loss}, held_out = {...}}, epochs = {[e] = {train =, held_out =}}, model = the
-- trained copy}. The trainer's model, optimizer and random stream are untouched.
function Trainer:probe_run(p)
  if type(p) ~= "table" or math.type(p.epochs) ~= "integer" or p.epochs < 1 then
    error("Trainer:probe_run: give {epochs = n >= 1, loss_weights = {...}, held_out = indices}", 2)
  end
  if p.held_out == nil then error("Trainer:probe_run: give held_out (indices or a split name)", 2) end
  local rng = core.get_rng_state()
  local model = self:clone_model()
  local opt = optim.Adam(model:param_groups(), { lr = self.alpha })
  opt:load_state_dict(self.optimizer:state_dict())
  local split = p.train or "train"
  local weights = p.loss_weights or {}
  local function losses()
    return { train = self:_evaluate(model, split).loss, held_out = self:_evaluate(model, p.held_out).loss }
  end
  local out = { start = losses(), epochs = {}, model = model }
  local ctx = { trainer = self, model = model, optimizer = opt, order = self.order }
  for e = 1, p.epochs do
    self:_train_pass(model, opt, self:_loader(split, true), e, { ctx = ctx, weights = function() return weights end })
    out.epochs[e] = losses()
  end
  model:eval()
  core.set_rng_state(rng)
  return out
end

-- ---------------------------------------------------------------------------
-- Checkpoints

local function best_path(path)
  return (path:gsub("%.safetensors$", "")) .. ".best.safetensors"
end

-- The tensors of a checkpoint as one "module" for miles.checkpoint: the model's
-- state dict, "best/<key>" and "snapshot/<tag>/<key>"; loading splits them back
-- (the model strictly; best and snapshots as copies).
function Trainer:_checkpoint_tensors()
  local trainer = self
  return {
    state_dict = function()
      local sd = trainer.model:state_dict()
      for k, t in pairs(trainer.best_state or {}) do sd["best/" .. k] = t end
      for tag, snap in pairs(trainer.snapshots) do
        for k, t in pairs(snap) do sd["snapshot/" .. tag .. "/" .. k] = t end
      end
      return sd
    end,
    load_state_dict = function(_, sd)
      local own, best, snaps = {}, {}, {}
      for k, t in pairs(sd) do
        local b = k:match("^best/(.*)$")
        local tag, key = k:match("^snapshot/([^/]+)/(.*)$")
        if b then
          best[b] = t
        elseif tag then
          snaps[tag] = snaps[tag] or {}
          snaps[tag][key] = t
        else
          own[k] = t
        end
      end
      trainer.model:load_state_dict(own)
      trainer.best_state = next(best) and copy_state(best) or nil
      trainer.snapshots = {}
      for tag, snap in pairs(snaps) do trainer.snapshots[tag] = copy_state(snap) end
    end,
  }
end

--- Write a checkpoint (see the top of the file), and export the best weights
-- when they changed since the last export.
function Trainer:save(path)
  local export = self.best_state and best_path(path) .. "@" .. self.best_epoch
  if export and export ~= self.best_export then
    local sd = self.best_state
    checkpoint.save(best_path(path), { model = { state_dict = function() return sd end },
                                       meta = { epoch = self.best_epoch } })
    self.best_export = export
  end
  checkpoint.save(path, { model = self:_checkpoint_tensors(), optimizer = self.optimizer, meta = {
    epoch = self.epoch_done, history = self.history, rule_state = self.rule.state,
    rng = core.get_rng_state(), best_epoch = self.best_epoch,
    best_score = self.best_epoch and self.best_score or nil, best_val = self.best_val,
    metric = self.metric, alpha = self.alpha, frozen = self.frozen, stopped = self.ctx.stop } })
end

--- Restore a checkpoint written by save (into this trainer, built with the same args).
function Trainer:load(path)
  local meta = checkpoint.load(path, { model = self:_checkpoint_tensors(), optimizer = self.optimizer })
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
  self.frozen = {}
  for name, lr in pairs(meta.frozen or {}) do
    self.frozen[name] = lr
    self:_freeze(name, true, 0)
  end
  self.ctx.stop = meta.stopped
  if self.logger then self.logger:replay(self.history) end
  return meta
end

--- Train the remaining epochs (or until a rule sets ctx.stop), then load the
-- final weights (the rule's finalize(ctx) result, else the best epoch's) and
-- evaluate them on "test". Returns {best_epoch, val = {fused, <name>..., delta},
-- test = {...}, weights = "best_epoch" | "finalize", metric, rule, epochs}.
function Trainer:fit()
  while self.epoch_done < self.epochs and not self.ctx.stop do
    self:epoch()
  end
  local summary = { best_epoch = self.best_epoch, val = self.best_val, metric = self.metric,
                    rule = self.rule.name, epochs = self.epoch_done, weights = "best_epoch" }
  local final = self.rule.finalize and self.rule.finalize(self.ctx)
  if final then
    self.model:load_state_dict(final)
    summary.weights = "finalize"
    summary.val = self:_summary_metrics(self:evaluate("val"))
  elseif self.best_state then
    self.model:load_state_dict(self.best_state)
  end
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
