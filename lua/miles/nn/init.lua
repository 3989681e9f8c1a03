--- miles.nn: neural-network building blocks, one module per file.
-- `miles.nn.functional` holds the functions with PyTorch's names and argument
-- order; `miles.nn.init` the initialisation functions; `miles.nn.Module` the
-- base class (see Module.lua for how to write a layer).
--
--   local nn = miles.nn
--   local net = nn.Sequential(nn.Conv2d(1, 8, 3, {padding = 1}), nn.BatchNorm2d(8),
--                             nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
--                             nn.Linear(8, 10))
local nn = {}
nn.functional = require "miles.nn.functional"
nn.init = require "miles.nn.init_fns"
nn.Module = require "miles.nn.Module"
nn.is_module = nn.Module.is_module

for _, name in ipairs({ "Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "ReLU", "MaxPool2d",
                        "AvgPool2d", "AdaptiveAvgPool2d", "Dropout", "Flatten", "Identity",
                        "Sequential" }) do
  nn[name] = require("miles.nn." .. name)
end

return nn
