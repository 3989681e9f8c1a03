--- nn.AdaptiveAvgPool2d(output_size): average pooling of (N, C, H, W) input to
-- a fixed (N, C, oh, ow); output_size is a number or {oh, ow}.
local F = require "miles.nn.functional"
local Module = require "miles.nn.Module"
local args = require "miles.nn.args"

local AdaptiveAvgPool2d = Module:extend("AdaptiveAvgPool2d")

function AdaptiveAvgPool2d:init(output_size)
  assert(output_size ~= nil, "AdaptiveAvgPool2d: give the output_size")
  self.output_size = output_size
end

function AdaptiveAvgPool2d:forward(x)
  return F.adaptive_avg_pool2d(x, self.output_size)
end

function AdaptiveAvgPool2d:extra_repr()
  return "output_size=" .. args.repr(self.output_size)
end

return AdaptiveAvgPool2d
