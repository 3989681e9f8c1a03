--- miles.nn: neural-network building blocks. `miles.nn.functional` holds the
-- functions with PyTorch's names and argument order.
local nn = {}
nn.functional = require "miles.nn.functional"
return nn
