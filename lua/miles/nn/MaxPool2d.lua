--- nn.MaxPool2d(kernel_size, {stride = kernel_size, padding = 0, dilation = 1,
-- ceil_mode = false}): 2-D max pooling over (N, C, H, W) input; sizes are
-- numbers or {h, w}, and may be given positionally in PyTorch's order.
-- return_indices is not supported.
local F = require "miles.nn.functional"
local Module = require "miles.nn.Module"
local args = require "miles.nn.args"

local MaxPool2d = Module:extend("MaxPool2d")

function MaxPool2d:init(kernel_size, ...)
  assert(kernel_size ~= nil, "MaxPool2d: give the kernel_size")
  local o = args.parse("MaxPool2d", { "stride", "padding", "dilation", "return_indices",
    "ceil_mode" }, { padding = 0, dilation = 1, return_indices = false, ceil_mode = false }, ...)
  assert(not o.return_indices, "MaxPool2d: return_indices is not supported")
  self.kernel_size, self.stride = kernel_size, o.stride or kernel_size
  self.padding, self.dilation, self.ceil_mode = o.padding, o.dilation, o.ceil_mode
end

function MaxPool2d:forward(x)
  return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
end

function MaxPool2d:extra_repr()
  return ("kernel_size=%s, stride=%s, padding=%s, dilation=%s, ceil_mode=%s"):format(
    args.repr(self.kernel_size), args.repr(self.stride), args.repr(self.padding),
    args.repr(self.dilation), args.repr(self.ceil_mode))
end

return MaxPool2d
