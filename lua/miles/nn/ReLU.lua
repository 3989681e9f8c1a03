--- nn.ReLU({inplace = false}): max(x, 0) elementwise. `inplace` is accepted for
-- PyTorch compatibility and shown when printed; the result is always a new
-- tensor (autograd needs the input).
local F = require "miles.nn.functional"
local Module = require "miles.nn.Module"
local args = require "miles.nn.args"

local ReLU = Module:extend("ReLU")

function ReLU:init(...)
  self.inplace = args.parse("ReLU", { "inplace" }, { inplace = false }, ...).inplace
end

function ReLU:forward(x)
  return F.relu(x)
end

function ReLU:extra_repr()
  return self.inplace and "inplace=True" or ""
end

return ReLU
