--- nn.Sequential(m1, m2, ...) or nn.Sequential({m1, m2, ...}): runs its modules
-- in order, each on the previous one's output.
--
-- Children are named "0", "1", ... as in PyTorch (so parameter names such as
-- "layer1.0.conv1.weight" match), while Lua indexing is 1-based: seq[1] is the
-- child named "0". `#seq` is the number of children; `seq:add(m)` appends.
local Module = require "miles.nn.Module"

local Sequential = Module:extend("Sequential")

function Sequential:init(...)
  local mods = { ... }
  if select("#", ...) == 1 and type(mods[1]) == "table" and not Module.is_module(mods[1]) then
    mods = mods[1]
  end
  for i, m in ipairs(mods) do
    assert(Module.is_module(m), ("Sequential: argument %d is not a module"):format(i))
    self:add(m)
  end
end

--- Append a module (named by its 0-based position). Returns self.
function Sequential:add(m)
  assert(Module.is_module(m), "Sequential:add: expects a module")
  self:add_module(tostring(#self), m)
  return self
end

-- seq[i]: the i-th child (1-based; negative counts from the end).
function Sequential:__getitem(i)
  local n = #self
  if i < 0 then i = n + 1 + i end
  if math.type(i) ~= "integer" or i < 1 or i > n then return nil end
  return self._modules.values[tostring(i - 1)]
end

Sequential.__len = function(self)
  return #self._modules.order
end

function Sequential:forward(x)
  for i = 1, #self do
    x = self[i](x)
  end
  return x
end

return Sequential
