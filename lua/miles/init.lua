--- miles: tensors, autograd and training on a C core.
-- `local miles = require "miles"` gives the tensor API (the functions of the C
-- module miles.core) plus the Lua library: miles.nn, miles.nn.functional (alias
-- miles.F), printing, and the helpers below.
--
-- Dims and indices are 1-based everywhere, as in Lua (and Torch7): x:sum(1) sums
-- over the first dim, x[1] is the first row, argmax returns 1-based positions and
-- class labels are 1..C. Negative dims count from the end (-1 is the last).
local core = require "miles.core"

local miles = {}
for k, v in pairs(core) do
  miles[k] = v
end
miles.core = core

require "miles.print"

miles.nn = require "miles.nn"
miles.F = miles.nn.functional
miles.optim = require "miles.optim"
miles.models = require "miles.models"
miles.checkpoint = require "miles.checkpoint"
miles.data = require "miles.data"
miles.signal = require "miles.signal"
miles.fusion = require "miles.fusion"
miles.rules = require "miles.rules"
miles.train = require "miles.train"
miles.plot = require "miles.plot"
--- profile(fn [, {device =}]) -> report: time split of one run of fn by module
-- class and backward op (lua/miles/profile.lua; miles.profile_format(report)).
miles.profile = require("miles.profile").run
miles.profile_format = require("miles.profile").format

--- autocast() -> on; autocast(on): bf16 autocast, off by default (PyTorch's
-- torch.autocast with dtype=bfloat16, on every device); autocast(on, fn, ...):
-- fn(...) with the switch set to on, then set back (its `with` block). While on, conv2d, matmul
-- and linear cast float32 operands to bfloat16 and give bfloat16 results
-- (float32 accumulation inside); softmax, log_softmax, nll_loss and
-- binary_cross_entropy_with_logits cast bfloat16 inputs to float32; other ops run
-- in their inputs' dtype (bfloat16 activations stay so; batch norm keeps float32
-- parameters and statistics). The casts are differentiable, so float32 weights
-- get float32 gradients.
miles.autocast = core.autocast

--- The GPU side: whether there is one, waiting for it, TF32 maths, determinism,
-- memory.
miles.cuda = {
  is_available = function() return core.cuda_device_count() > 0 end,
  device_count = core.cuda_device_count,
  is_built = core.cuda_built,
  --- Is the GPU the emulated one (a build with EMU=1, for the specs)?
  is_emulated = core.cuda_emulated,
  --- Wait for the GPU's queued work (and raise an error a kernel flagged).
  synchronize = core.cuda_synchronize,
  --- allow_tf32() -> on; allow_tf32(on): TF32 tensor-core maths for float32
  -- matmuls and convolutions (on by default, like PyTorch's for convolutions).
  allow_tf32 = core.cuda_tf32,
  --- deterministic() -> on; deterministic(on): GPU convolutions repeat bit for
  -- bit from run to run (engines noted non-deterministic skipped, the first
  -- workable one taken instead of the fastest), and scatter_add/index_add (the
  -- gradients of gather, index_select) add in the CPU's order instead of
  -- atomically; off by default, like PyTorch's cudnn.deterministic. Without CUDA
  -- it is always off.
  deterministic = core.cuda_deterministic,
  memory_stats = function() return core.memory().cuda end,
  --- host_waits() -> n: how many times miles has made the host wait for a GPU
  -- (synchronize(), reading a GPU value: item(), :cpu(), a metric; a staging
  -- buffer still being read). A steady training step makes none: it only queues.
  host_waits = core.cuda_host_waits,
  empty_cache = core.empty_cache,
  --- graph(fn [, {device =}]) -> graph, fn's results: fn's GPU work captured,
  -- graph:replay() runs it with one launch (lua/miles/cuda_graph.lua).
  graph = require("miles.cuda_graph").graph,
}

--- Tensors of the same shape, dtype (and device) as x.
function miles.zeros_like(x, opts)
  opts = opts or {}
  return miles.zeros(x:shape(), { dtype = opts.dtype or x:dtype(), device = opts.device or x:device(),
    requires_grad = opts.requires_grad })
end

function miles.ones_like(x, opts)
  opts = opts or {}
  return miles.ones(x:shape(), { dtype = opts.dtype or x:dtype(), device = opts.device or x:device(),
    requires_grad = opts.requires_grad })
end

function miles.full_like(x, v, opts)
  opts = opts or {}
  return miles.full(x:shape(), v, { dtype = opts.dtype or x:dtype(), device = opts.device or x:device(),
    requires_grad = opts.requires_grad })
end

function miles.rand_like(x)
  return miles.rand(x:shape(), { dtype = x:dtype(), device = x:device() })
end

function miles.randn_like(x)
  return miles.randn(x:shape(), { dtype = x:dtype(), device = x:device() })
end

--- Is every element of a close to b? |a - b| <= atol + rtol * |b|, as PyTorch.
function miles.allclose(a, b, rtol, atol)
  rtol, atol = rtol or 1e-5, atol or 1e-8
  if not miles.is_tensor(b) then
    b = miles.full_like(a, b)
  end
  local ok = miles.no_grad(function()
    local diff = (a - b):abs():to("float64")
    local tol = b:abs():to("float64") * rtol + atol
    return diff:le(tol):logical_and(diff:eq(diff)):to("int64"):sum():item() == a:numel()
  end)
  return ok
end

-- Methods written in Lua, visible on every tensor.
local T = core.Tensor
T.allclose = miles.allclose
function T:float() return self:to("float32") end
function T:double() return self:to("float64") end
function T:bfloat16() return self:to("bfloat16") end
function T:long() return self:to("int64") end
function T:bool() return self:to("bool") end
function T:byte() return self:to("uint8") end

return miles
