--- nn.AvgPool2d(kernel_size, {stride = kernel_size, padding = 0, ceil_mode =
-- false, count_include_pad = true}): 2-D average pooling over (N, C, H, W)
-- input; sizes are numbers or {h, w}, and may be given positionally in
-- PyTorch's order. divisor_override is not supported.
local F = require "miles.nn.functional"
local Module = require "miles.nn.Module"
local args = require "miles.nn.args"

local AvgPool2d = Module:extend("AvgPool2d")

function AvgPool2d:init(kernel_size, ...)
  assert(kernel_size ~= nil, "AvgPool2d: give the kernel_size")
  local o = args.parse("AvgPool2d", { "stride", "padding", "ceil_mode", "count_include_pad",
    "divisor_override" }, { padding = 0, ceil_mode = false, count_include_pad = true }, ...)
  assert(o.divisor_override == nil, "AvgPool2d: divisor_override is not supported")
  self.kernel_size, self.stride, self.padding = kernel_size, o.stride or kernel_size, o.padding
  self.ceil_mode, self.count_include_pad = o.ceil_mode, o.count_include_pad
end

function AvgPool2d:forward(x)
  return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
    self.count_include_pad)
end

function AvgPool2d:extra_repr()
  return ("kernel_size=%s, stride=%s, padding=%s"):format(args.repr(self.kernel_size),
    args.repr(self.stride), args.repr(self.padding))
end

return AvgPool2d
