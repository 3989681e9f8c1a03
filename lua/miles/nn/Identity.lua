--- nn.Identity(...): returns its input; any constructor arguments are ignored
-- (as PyTorch), so it can stand in for any layer.
local Module = require "miles.nn.Module"

local Identity = Module:extend("Identity")

function Identity:forward(x)
  return x
end

return Identity
