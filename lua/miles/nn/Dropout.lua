--- nn.Dropout(p = 0.5, {inplace = false}): in training mode, zero each element
-- with probability p and scale the rest by 1 / (1 - p); in eval mode, identity.
-- `inplace` is accepted for PyTorch compatibility (the result is a new tensor).
local F = require "miles.nn.functional"
local Module = require "miles.nn.Module"
local args = require "miles.nn.args"

local Dropout = Module:extend("Dropout")

function Dropout:init(...)
  local o = args.parse("Dropout", { "p", "inplace" }, { p = 0.5, inplace = false }, ...)
  assert(type(o.p) == "number" and o.p >= 0 and o.p <= 1,
    "Dropout: p must be a probability between 0 and 1, got " .. tostring(o.p))
  self.p, self.inplace = o.p, o.inplace
end

function Dropout:forward(x)
  return F.dropout(x, self.p, self.training)
end

function Dropout:extra_repr()
  return ("p=%s, inplace=%s"):format(args.repr(self.p), args.repr(self.inplace))
end

return Dropout
