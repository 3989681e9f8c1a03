--- miles.cuda.graph: a function's GPU work captured once and replayed with one
-- launch. For small models, whose steps cost more in kernel launches than in
-- kernels (csrc/cuda/cuda_graph.c has the mechanics).
--
--   local x, y = batch.x:cuda(), batch.y:cuda()   -- inputs that stay, on the GPU
--   local function step()
--     local loss = F.cross_entropy(model(x), y)
--     opt:zero_grad(); loss:backward(); opt:step()
--     return loss:detach()
--   end
--   step()                                        -- once first (see below)
--   local g, loss = miles.cuda.graph(step)        -- captured: nothing ran
--   for batch in loader:epoch(e) do
--     x:copy_(batch.x); y:copy_(batch.y)          -- new values, same tensors
--     g:replay()                                  -- the whole step
--     print(loss:item())                          -- rewritten by each replay
--   end
--   g:free()                                      -- or let the collector do it
--
-- A replay repeats the captured kernels on the same memory: the tensors the
-- function read (inputs, parameters, optimizer state) must stay alive and in
-- place, and the tensors it returned are rewritten by each replay. Lua does not
-- run during a replay, but for the hooks registered with on_replay while
-- capturing, which run before each replay: the optimizers' steps taken inside
-- the capture (so that the learning rates and bias corrections of that step are
-- the current ones: set_lr works between replays; freezing a group or adding
-- parameters needs a new capture), and counters kept in Lua (rules/ogm.lua's
-- steps). Settings read while
-- the ops are queued (bf16 autocast, TF32, channels-last) are those of the
-- capture: changing them later changes no replay. Random numbers (dropout,
-- randn) are new at each replay: a replay draws what the same step run op by op
-- would draw from the generator's state at that moment (its seed included), and
-- moves the generator as far; the capture itself moves it not at all (as in
-- PyTorch), unless the function also drew on the CPU.
--
-- Refused inside the capture, with a message: reading a GPU value (item(), :cpu(),
-- printing, metrics), copying host data to the GPU, convolution shapes not met
-- before (their engines are chosen by timing), an optimizer step for parameters
-- without state. Hence: run the function once
-- before capturing it.
local core = require "miles.core"

local M = {}

local active = nil -- the capture running: { hooks = {...} }

--- Is a capture running?
function M.capturing()
  return active ~= nil
end

--- Inside a capture: run fn before each replay (the optimizers' steps, counters
-- kept in Lua); save() returns a function that undoes what fn changes on the Lua
-- side (the step counters), called when the replay fails after fn ran.
function M.on_replay(fn, save)
  assert(active, "miles.cuda.graph: on_replay outside a capture")
  active.hooks[#active.hooks + 1] = { run = fn, save = save }
end

local Graph = {}
Graph.__index = Graph

local function handle(self)
  if not self._g then error("miles.cuda.graph: this graph was freed", 0) end
  return self._g
end

--- Run the captured work again (after refreshing the optimizers' steps).
function Graph:replay()
  local g = handle(self)
  local undo = {}
  for i, h in ipairs(self._hooks) do undo[i] = h.save() end
  g:refresh_begin()
  local ok, err = pcall(function()
    for _, h in ipairs(self._hooks) do h.run() end
  end)
  local ended, end_err = pcall(g.refresh_end, g) -- leaves refresh mode in any case
  if ok and ended then ok, err = pcall(g.launch, g) end
  if not (ok and ended) then
    for i = #undo, 1, -1 do undo[i]() end -- nothing ran: the counters go back
    error(ok and end_err or err, 0)
  end
end

--- Give the graph's memory back (also done when it is collected).
function Graph:free()
  if self._g then
    self._g:free()
    self._g = nil
  end
end

--- Kernel and copy nodes in the graph, and how many of them the optimizers refresh.
function Graph:nodes() return handle(self):node_count() end
function Graph:updatable() return handle(self):updatable_count() end

-- The GPU index of a device name ("cuda", "cuda:N").
local function gpu_index(device)
  if device == "cuda" then return 0 end
  local n = type(device) == "string" and device:match("^cuda:(%d+)$")
  if not n then
    error(("miles.cuda.graph: device must be 'cuda' or 'cuda:N', not %s"):format(tostring(device)), 0)
  end
  return tonumber(n)
end

--- miles.cuda.graph(fn [, {device = "cuda:0"}]) -> graph, fn's results.
-- Captures fn's work on the GPU (nothing runs); graph:replay() runs it.
function M.graph(fn, opts)
  opts = opts or {}
  if type(fn) ~= "function" then
    error("miles.cuda.graph: expects a function to capture", 0)
  end
  for k in pairs(opts) do
    if k ~= "device" then error(("miles.cuda.graph: unknown option '%s'"):format(tostring(k)), 0) end
  end
  if active then error("miles.cuda.graph: captures do not nest", 0) end
  local index = gpu_index(opts.device or "cuda")
  local ok, err = pcall(core._cuda_graph_begin, index)
  if not ok then
    error("miles.cuda.graph: " .. tostring(err):gsub("^.-_cuda_graph_begin: ", ""), 0)
  end
  active = { hooks = {} }
  local res = table.pack(pcall(fn))
  local cap = active
  active = nil
  if not res[1] then
    core._cuda_graph_end(index, false)
    local msg = res[2]
    error(type(msg) == "string" and "miles.cuda.graph: " .. msg or msg, 0)
  end
  local ended, g = pcall(core._cuda_graph_end, index, true)
  if not ended then
    error("miles.cuda.graph: " .. tostring(g):gsub("^.-_cuda_graph_end: ", ""), 0)
  end
  local graph = setmetatable({ _g = g, _hooks = cap.hooks, device = "cuda:" .. index }, Graph)
  return graph, table.unpack(res, 2, res.n)
end

return M
