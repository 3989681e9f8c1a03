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

return F
