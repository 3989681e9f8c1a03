--- nn.Flatten(start_dim = 2, end_dim = -1): flatten dims start_dim..end_dim into
-- one. Dims are 1-based as everywhere in miles, so the default keeps the batch
-- dim (PyTorch's start_dim=1).
local Module = require "miles.nn.Module"
local args = require "miles.nn.args"

local Flatten = Module:extend("Flatten")

function Flatten:init(...)
  local o = args.parse("Flatten", { "start_dim", "end_dim" }, { start_dim = 2, end_dim = -1 }, ...)
  self.start_dim, self.end_dim = o.start_dim, o.end_dim
end

function Flatten:forward(x)
  return x:flatten(self.start_dim, self.end_dim)
end

function Flatten:extra_repr()
  return ("start_dim=%d, end_dim=%d"):format(self.start_dim, self.end_dim)
end

return Flatten
