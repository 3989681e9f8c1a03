--- nn.Linear(in_features, out_features, {bias = true, dtype = "float32"}):
-- y = x W^T + b over the last dim. weight is (out_features, in_features), bias
-- (out_features). PyTorch's initialisation: weight kaiming_uniform_(a = sqrt(5)),
-- i.e. U(-1/sqrt(in), 1/sqrt(in)), and bias U(-1/sqrt(in), 1/sqrt(in)).
local core = require "miles.core"
local F = require "miles.nn.functional"
local Module = require "miles.nn.Module"
local args = require "miles.nn.args"
local init = require "miles.nn.init_fns"

local Linear = Module:extend("Linear")

function Linear:init(in_features, out_features, ...)
  assert(math.type(in_features) == "integer" and math.type(out_features) == "integer",
    "Linear: in_features and out_features must be integers")
  local o = args.parse("Linear", { "bias", "dtype" }, { bias = true, dtype = "float32" }, ...)
  self.in_features, self.out_features = in_features, out_features
  local pt = { dtype = o.dtype, requires_grad = true }
  self:register_parameter("weight", core.zeros(out_features, in_features, pt))
  self:register_parameter("bias", o.bias and core.zeros(out_features, pt) or nil)
  self:reset_parameters()
end

--- Draw the parameters again with PyTorch's default initialisation.
function Linear:reset_parameters()
  init.default_(self.weight, self.bias)
end

function Linear:forward(x)
  return F.linear(x, self.weight, self.bias)
end

function Linear:extra_repr()
  return ("in_features=%d, out_features=%d, bias=%s"):format(self.in_features,
    self.out_features, args.repr(self.bias ~= nil))
end

return Linear
