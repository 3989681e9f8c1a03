--- nn.BatchNorm1d(num_features, {eps = 1e-5, momentum = 0.1, affine = true,
-- track_running_stats = true}): batch normalisation over (N, C) or (N, C, L)
-- input, per channel C. See miles.nn.BatchNorm for the parameters and buffers.
local BatchNorm = require "miles.nn.BatchNorm"

local BatchNorm1d = BatchNorm:extend("BatchNorm1d")

function BatchNorm1d:check_input_dim(x)
  local d = x:dim()
  if d ~= 2 and d ~= 3 then
    error(("BatchNorm1d: expected 2D or 3D input (N, C[, L]), got %dD input [%s]"):format(
      d, table.concat(x:shape(), ",")), 3)
  end
end

return BatchNorm1d
