--- miles.nn.init: PyTorch's torch.nn.init, filling tensors in place (without
-- recording gradients) from miles' seeded generator, so `miles.manual_seed`
-- makes every initialisation reproducible. Each function returns its tensor.
--
--   init.kaiming_normal_(w, {mode = "fan_out", nonlinearity = "relu"})
--   init.uniform_(b, -0.1, 0.1)
--
-- The kaiming functions take PyTorch's keyword arguments (a, mode,
-- nonlinearity) positionally or as one option table.
local core = require "miles.core"
local args = require "miles.nn.args"

local init = {}

-- Run fn(t) with gradient recording off, so leaves that require grad can be
-- written; returns t.
local function fill(t, fn)
  assert(core.is_tensor(t), "init: expects a tensor")
  core.no_grad(function() fn(t) end)
  return t
end

--- fan_in and fan_out of a weight as PyTorch computes them: for a shape
-- (out, in, k...), fan_in = in * prod(k), fan_out = out * prod(k).
function init.calculate_fan_in_and_fan_out(t)
  local shape = t:shape()
  if #shape < 2 then
    error("init: fan in and fan out need a tensor of at least 2 dims, got " .. #shape, 2)
  end
  local receptive = 1
  for i = 3, #shape do receptive = receptive * shape[i] end
  return shape[2] * receptive, shape[1] * receptive
end

--- The recommended gain for a nonlinearity, as torch.nn.init.calculate_gain.
function init.calculate_gain(nonlinearity, param)
  local unit = { linear = true, identity = true, sigmoid = true, conv1d = true, conv2d = true,
                 conv3d = true, conv_transpose1d = true, conv_transpose2d = true,
                 conv_transpose3d = true }
  if unit[nonlinearity] then return 1 end
  if nonlinearity == "tanh" then return 5 / 3 end
  if nonlinearity == "relu" then return math.sqrt(2) end
  if nonlinearity == "selu" then return 3 / 4 end
  if nonlinearity == "leaky_relu" then
    local slope = param or 0.01
    return math.sqrt(2 / (1 + slope * slope))
  end
  error("init: unknown nonlinearity '" .. tostring(nonlinearity) .. "'", 2)
end

--- Fill with values drawn uniformly from [a, b) (default [0, 1)).
function init.uniform_(t, a, b)
  a, b = a or 0, b or 1
  return fill(t, function(x)
    x:copy_(core.rand(x:shape(), { dtype = x:dtype() }) * (b - a) + a)
  end)
end

--- Fill with values drawn from N(mean, std^2) (default N(0, 1)).
function init.normal_(t, mean, std)
  mean, std = mean or 0, std or 1
  return fill(t, function(x)
    x:copy_(core.randn(x:shape(), { dtype = x:dtype() }) * std + mean)
  end)
end

--- Fill with the value v.
function init.constant_(t, v)
  return fill(t, function(x) x:fill_(v) end)
end

--- Fill with zeros.
function init.zeros_(t)
  return init.constant_(t, 0)
end

--- Fill with ones.
function init.ones_(t)
  return init.constant_(t, 1)
end

-- The kaiming arguments (a, mode, nonlinearity), positional or as options.
local function kaiming_args(what, ...)
  local o = args.parse(what, { "a", "mode", "nonlinearity" },
    { a = 0, mode = "fan_in", nonlinearity = "leaky_relu" }, ...)
  assert(o.mode == "fan_in" or o.mode == "fan_out",
    what .. ": mode must be 'fan_in' or 'fan_out', got " .. tostring(o.mode))
  return o
end

-- The standard deviation He et al. give for a weight under those arguments.
local function kaiming_std(t, o)
  local fan_in, fan_out = init.calculate_fan_in_and_fan_out(t)
  local fan = o.mode == "fan_in" and fan_in or fan_out
  return init.calculate_gain(o.nonlinearity, o.a) / math.sqrt(fan)
end

--- He uniform initialisation: U(-bound, bound) with bound = gain * sqrt(3 / fan).
-- Arguments after t: a (0), mode ("fan_in"), nonlinearity ("leaky_relu").
function init.kaiming_uniform_(t, ...)
  local bound = math.sqrt(3) * kaiming_std(t, kaiming_args("kaiming_uniform_", ...))
  return init.uniform_(t, -bound, bound)
end

--- He normal initialisation: N(0, std^2) with std = gain / sqrt(fan).
function init.kaiming_normal_(t, ...)
  return init.normal_(t, 0, kaiming_std(t, kaiming_args("kaiming_normal_", ...)))
end

--- Glorot uniform: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)).
function init.xavier_uniform_(t, gain)
  local fan_in, fan_out = init.calculate_fan_in_and_fan_out(t)
  local bound = (gain or 1) * math.sqrt(6 / (fan_in + fan_out))
  return init.uniform_(t, -bound, bound)
end

--- Glorot normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).
function init.xavier_normal_(t, gain)
  local fan_in, fan_out = init.calculate_fan_in_and_fan_out(t)
  return init.normal_(t, 0, (gain or 1) * math.sqrt(2 / (fan_in + fan_out)))
end

--- PyTorch's default initialisation of Linear and Conv2d: weight from
-- kaiming_uniform_(a = sqrt(5)), bias (if any) uniform in +-1/sqrt(fan_in).
function init.default_(weight, bias)
  init.kaiming_uniform_(weight, math.sqrt(5))
  if bias then
    local fan_in = init.calculate_fan_in_and_fan_out(weight)
    local bound = fan_in > 0 and 1 / math.sqrt(fan_in) or 0
    init.uniform_(bias, -bound, bound)
  end
end

return init
