--- nn.BatchNorm2d(num_features, {eps = 1e-5, momentum = 0.1, affine = true,
-- track_running_stats = true}): batch normalisation over (N, C, H, W) input, per
-- channel C. See miles.nn.BatchNorm for the parameters and buffers.
local BatchNorm = require "miles.nn.BatchNorm"

local BatchNorm2d = BatchNorm:extend("BatchNorm2d")

function BatchNorm2d:check_input_dim(x)
  if x:dim() ~= 4 then
    error(("BatchNorm2d: expected 4D input (N, C, H, W), got %dD input [%s]"):format(
      x:dim(), table.concat(x:shape(), ",")), 3)
  end
end

return BatchNorm2d
