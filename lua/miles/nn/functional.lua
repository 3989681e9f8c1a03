--- miles.nn.functional (alias miles.F): PyTorch's torch.nn.functional names and
-- argument order. Keyword arguments go in a trailing options table:
--   F.cross_entropy(logits, target, {weight = w, reduction = "sum",
--                                    label_smoothing = 0.1, ignore_index = k})
-- Class targets are 1-based (1..C), like every index in miles.
local core = require "miles.core"

local F = {}

F.linear = core.linear
F.relu = core.relu
F.sigmoid = core.sigmoid
F.tanh = core.tanh
F.softplus = core.softplus

--- softmax(x, dim) and log_softmax(x, dim): dim is required (no implicit dim).
function F.softmax(x, dim)
  assert(dim, "softmax: give the dim")
  return core.softmax(x, dim)
end

function F.log_softmax(x, dim)
  assert(dim, "log_softmax: give the dim")
  return core.log_softmax(x, dim)
end

F.cross_entropy = core.cross_entropy
F.nll_loss = core.nll_loss
F.binary_cross_entropy_with_logits = core.binary_cross_entropy_with_logits
F.mse_loss = core.mse_loss

--- Pooling, resizing and dropout (PyTorch's arguments, positional or in a
-- trailing options table; a window or size is a number or {h, w}):
--   max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)
--   avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad)
--   adaptive_avg_pool2d(x, output_size)
--   interpolate(x, {size = {h, w} | scale_factor = s, mode = "nearest" | "bilinear",
--                   align_corners = false})
--   dropout(x, p = 0.5, training = true)
F.max_pool2d = core.max_pool2d
F.avg_pool2d = core.avg_pool2d
F.adaptive_avg_pool2d = core.adaptive_avg_pool2d
F.interpolate = core.interpolate
F.dropout = core.dropout

--- conv2d(x, weight, bias, stride, padding, dilation, groups): each of stride,
-- padding and dilation a number or {h, w}; or the options as a table:
-- conv2d(x, w, b, {stride = 2, padding = 1}), where relu = true gives
-- relu(conv2d(...)) in one op (fused into cuDNN's graph when an engine takes it).
F.conv2d = core.conv2d

--- batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps
-- [, {residual = r, relu = true}]): when training, normalises by the batch
-- statistics and updates the running ones in place; otherwise uses the running
-- ones. The options add r (x's shape) and then apply relu in the same pass: a
-- ResNet block's end, with the values and gradients of the separate ops.
F.batch_norm = core.batch_norm

return F
