--- nn.Conv2d(in_channels, out_channels, kernel_size, {stride = 1, padding = 0,
-- dilation = 1, groups = 1, bias = true, padding_mode = "zeros", dtype =
-- "float32"}): 2-D convolution over (N, C, H, W) input. kernel_size, stride,
-- padding and dilation are numbers or {h, w}; padding may also be "valid" (0)
-- or "same" (stride 1, with an even total padding per dim). The optional
-- arguments may be positional in PyTorch's order. weight is (out_channels,
-- in_channels / groups, kh, kw); PyTorch's initialisation (kaiming_uniform_ with
-- a = sqrt(5); bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
local core = require "miles.core"
local F = require "miles.nn.functional"
local Module = require "miles.nn.Module"
local args = require "miles.nn.args"
local init = require "miles.nn.init_fns"

local Conv2d = Module:extend("Conv2d")

-- The numeric padding for "same" (or error when it would be asymmetric).
local function same_padding(kernel, dilation, stride)
  assert(stride[1] == 1 and stride[2] == 1, "Conv2d: padding='same' needs stride 1")
  local pad = {}
  for i = 1, 2 do
    local total = dilation[i] * (kernel[i] - 1)
    assert(total % 2 == 0, "Conv2d: padding='same' with an even kernel extent would be "
      .. "asymmetric; give the padding explicitly")
    pad[i] = total // 2
  end
  return pad
end

function Conv2d:init(in_channels, out_channels, kernel_size, ...)
  local o = args.parse("Conv2d", { "stride", "padding", "dilation", "groups", "bias",
    "padding_mode", "dtype" }, { stride = 1, padding = 0, dilation = 1, groups = 1,
    bias = true, padding_mode = "zeros", dtype = "float32" }, ...)
  assert(math.type(in_channels) == "integer" and math.type(out_channels) == "integer",
    "Conv2d: in_channels and out_channels must be integers")
  assert(math.type(o.groups) == "integer" and o.groups >= 1, "Conv2d: groups must be a positive integer")
  assert(in_channels % o.groups == 0 and out_channels % o.groups == 0,
    "Conv2d: in_channels and out_channels must be divisible by groups")
  assert(o.padding_mode == "zeros", "Conv2d: only padding_mode='zeros' is supported")
  self.in_channels, self.out_channels, self.groups = in_channels, out_channels, o.groups
  self.kernel_size = args.pair(kernel_size, "Conv2d: kernel_size")
  self.stride = args.pair(o.stride, "Conv2d: stride")
  self.dilation = args.pair(o.dilation, "Conv2d: dilation")
  self.padding_mode = o.padding_mode
  if o.padding == "valid" then
    self.padding = { 0, 0 }
  elseif o.padding == "same" then
    self.padding = same_padding(self.kernel_size, self.dilation, self.stride)
  else
    self.padding = args.pair(o.padding, "Conv2d: padding")
  end
  self.padding_repr = type(o.padding) == "string" and o.padding or nil
  local pt = { dtype = o.dtype, requires_grad = true }
  self:register_parameter("weight", core.zeros(out_channels, in_channels // o.groups,
    self.kernel_size[1], self.kernel_size[2], pt))
  self:register_parameter("bias", o.bias and core.zeros(out_channels, pt) or nil)
  self:reset_parameters()
end

--- Draw the parameters again with PyTorch's default initialisation.
function Conv2d:reset_parameters()
  init.default_(self.weight, self.bias)
end

function Conv2d:forward(x)
  return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
end

-- Is the pair {v, v}?
local function all_eq(p, v)
  return p[1] == v and p[2] == v
end

function Conv2d:extra_repr()
  local s = ("%d, %d, kernel_size=%s, stride=%s"):format(self.in_channels, self.out_channels,
    args.repr(self.kernel_size), args.repr(self.stride))
  if self.padding_repr then
    s = s .. ", padding=" .. self.padding_repr
  elseif not all_eq(self.padding, 0) then
    s = s .. ", padding=" .. args.repr(self.padding)
  end
  if not all_eq(self.dilation, 1) then s = s .. ", dilation=" .. args.repr(self.dilation) end
  if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
  if self.bias == nil then s = s .. ", bias=False" end
  return s
end

return Conv2d
