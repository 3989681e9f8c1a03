--- The base class of nn.BatchNorm1d and nn.BatchNorm2d (PyTorch's _BatchNorm):
-- (num_features, {eps = 1e-5, momentum = 0.1, affine = true,
-- track_running_stats = true, dtype = "float32"}). momentum = false is
-- PyTorch's momentum=None (a cumulative average over the batches seen).
--
-- Parameters weight (ones) and bias (zeros) when affine; persistent buffers
-- running_mean (zeros), running_var (ones) and num_batches_tracked (a 0-dim
-- int64, as PyTorch) when tracking running statistics. In training mode the
-- batch's statistics normalise and update the running ones in place; in eval
-- mode the running ones normalise.
local core = require "miles.core"
local F = require "miles.nn.functional"
local Module = require "miles.nn.Module"
local args = require "miles.nn.args"

local BatchNorm = Module:extend("_BatchNorm")

function BatchNorm:init(num_features, ...)
  assert(math.type(num_features) == "integer" and num_features > 0,
    self.__name .. ": num_features must be a positive integer")
  local o = args.parse(self.__name, { "eps", "momentum", "affine", "track_running_stats", "dtype" },
    { eps = 1e-5, momentum = 0.1, affine = true, track_running_stats = true, dtype = "float32" }, ...)
  self.num_features, self.eps, self.momentum = num_features, o.eps, o.momentum
  self.affine, self.track_running_stats = o.affine, o.track_running_stats
  local pt = { dtype = o.dtype, requires_grad = true }
  self:register_parameter("weight", o.affine and core.ones(num_features, pt) or nil)
  self:register_parameter("bias", o.affine and core.zeros(num_features, pt) or nil)
  local track = o.track_running_stats
  self:register_buffer("running_mean", track and core.zeros(num_features, { dtype = o.dtype }) or nil)
  self:register_buffer("running_var", track and core.ones(num_features, { dtype = o.dtype }) or nil)
  self:register_buffer("num_batches_tracked", track and core.tensor(0, { dtype = "int64" }) or nil)
end

--- Reset the running statistics (mean 0, variance 1, no batches seen).
function BatchNorm:reset_running_stats()
  if self.track_running_stats then
    core.no_grad(function()
      self.running_mean:zero_()
      self.running_var:fill_(1)
      self.num_batches_tracked:zero_()
    end)
  end
end

--- Check the input's dims; the subclasses say which they accept.
function BatchNorm:check_input_dim()
end

--- forward(x [, {residual = r, relu = true}]): the options as F.batch_norm's,
-- which add r and apply relu in the normalisation's pass.
function BatchNorm:forward(x, epilogue)
  self:check_input_dim(x)
  local factor = self.momentum or 0
  if self.training and self.track_running_stats then
    local nbt = self.num_batches_tracked
    core.no_grad(function() nbt:add_(1) end) -- on its device: no wait for a GPU
    if not self.momentum then factor = 1 / nbt:item() end
  end
  -- Batch statistics in training, or when there are no running ones to use.
  local use_batch = self.training or self.running_mean == nil
  local track = not self.training or self.track_running_stats
  return F.batch_norm(x, track and self.running_mean or nil, track and self.running_var or nil,
    self.weight, self.bias, use_batch, factor, self.eps, epilogue)
end

function BatchNorm:extra_repr()
  return ("%d, eps=%s, momentum=%s, affine=%s, track_running_stats=%s"):format(
    self.num_features, args.repr(self.eps), args.repr(self.momentum or nil),
    args.repr(self.affine), args.repr(self.track_running_stats))
end

return BatchNorm
