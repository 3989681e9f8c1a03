--- The trainer's training steps as a CUDA graph (train.Trainer{cuda_graph = true}):
-- the whole step (forward, losses, backward, the optimizer's step) captured once
-- per training pass and replayed for each batch, one launch instead of hundreds.
-- For small models on a GPU, whose steps are bound by launching kernels.
--
-- In each pass: the first batch runs as usual (its step makes the optimizer's
-- state and chooses the convolution engines: see miles.cuda.graph); the next one
-- of the same size is copied into static tensors on the GPU and the step on them
-- is captured; every later batch of that size is copied into them and the graph
-- replayed. A batch of another size (the last, smaller one) runs as usual (and a
-- later batch of the captured size captures again). The
-- loss weights are read at each step as usual; new weights capture again. The
-- graph goes at the end of the pass, so a freeze or a learning rate set between
-- epochs is in the next capture. A rule acting inside the step (on_step: OGM's
-- gradient modulation) is captured with it, its ctx.batch then the static
-- tensors: it must keep its work on the GPU (reading a value there is refused
-- by the capture, with a message) and count replays through on_replay of
-- require "miles.cuda_graph" where it keeps counts in Lua (rules/ogm.lua does
-- both). Its ctx.batch's other fields are the captured batch's.
local core = require "miles.core"
local cuda_graph = require "miles.cuda_graph"

local M = {}

local Stepper = {}
Stepper.__index = Stepper

--- A stepper for one training pass of trainer t (model, optimizer opt, the pass's
-- hooks p as Trainer:_train_pass has them).
function M.new(t, model, opt, p)
  if t.device == "cpu" then
    error("train: cuda_graph needs a GPU device (device = 'cuda'), not the cpu", 0)
  end
  return setmetatable({ t = t, model = model, opt = opt, p = p }, Stepper)
end

local function same_weights(a, b)
  for k, v in pairs(a) do if b[k] ~= v then return false end end
  for k, v in pairs(b) do if a[k] ~= v then return false end end
  return true
end

local function copy(w)
  local c = {}
  for k, v in pairs(w) do c[k] = v end
  return c
end

local function clones(ts)
  local c = {}
  for k, v in pairs(ts) do c[k] = v:clone() end
  return c
end

-- The step on the static tensors, captured (nothing runs yet).
function Stepper:_capture(batch, w)
  local t = self.t
  if self.graph then self.graph:free() end
  self.x = {}
  for _, n in ipairs(t.order) do self.x[n] = batch[n]:to(t.device) end
  self.y = batch.y:to(t.device)
  self.w = copy(w)
  local ctx = self.p.ctx
  local saved = ctx and ctx.batch
  if ctx then -- (the rule's step reads the batch the graph reads)
    local b = {}
    for k, v in pairs(batch) do b[k] = v end
    b.y = self.y
    for n, x in pairs(self.x) do b[n] = x end
    ctx.batch = b
  end
  local ok, graph, out = pcall(cuda_graph.graph, function()
    local logits, losses, total = t:_step(self.model, self.opt, self.x, self.y, w, self.p)
    return { logits = logits, losses = losses, total = total }
  end, { device = t.device })
  if ctx then ctx.batch = saved end
  if not ok then error(graph, 0) end
  self.graph, self.out = graph, out
end

--- One batch's step with loss weights w; returns the heads' detached logits and
-- losses, the detached total (or nil) and the labels, as the pass tallies them.
function Stepper:step(batch, w)
  local t = self.t
  local n = batch.y:shape()[1]
  if not self.size or n ~= self.size then
    self.size = self.size or n
    -- a step outside the graph gives the parameters new gradients: capture again
    self:free()
    local logits, losses, total = t:_step(self.model, self.opt, t:_inputs(batch), batch.y, w, self.p)
    return logits, losses, total, batch.y
  end
  if not self.graph or not same_weights(self.w, w) then
    self:_capture(batch, w)
  else
    core.no_grad(function()
      for _, name in ipairs(t.order) do self.x[name]:copy_(batch[name]) end
      self.y:copy_(batch.y)
    end)
  end
  self.graph:replay()
  local o = self.out
  -- the graph rewrites its outputs at the next replay: the tally keeps copies
  return clones(o.logits), clones(o.losses), o.total and o.total:clone(), self.y:clone()
end

--- Give the graph's memory back (the end of the pass).
function Stepper:free()
  if self.graph then self.graph:free() end
  self.graph, self.out, self.x, self.y = nil, nil, nil, nil
end

return M
