--- miles.profile(fn [, {device = "cuda", wait = true}]) -> report: runs fn() once, timing
-- each leaf module's forward (by class: Conv2d, BatchNorm2d, Linear, ...) and
-- each backward op (by autograd node: conv2d, batch_norm, ...), the device
-- waited for before and after each (so a time is that piece's own work, and the
-- run is slower than an unprofiled one), plus the sections fn marks with
-- profile.section(name, f). A piece inside another (a module in a section, a
-- backward inside a section, a module whose forward calls another) counts once:
-- the outer one's row has only its own time. Work outside all pieces (ops called
-- outside a module: losses, concatenations; the rest of the Lua) is `other`.
-- wait = false times the host alone (nothing waited for): on a GPU, where the
-- work is queued, that is what each piece costs the host, to tell a step bound
-- by the host from one bound by the GPU.
-- The full collections that tensor memory paced during fn (csrc/lua/l_init.c)
-- run inside whichever piece allocated: report.collector says what they took.
--   report.rows: {phase = "forward"|"backward"|"section", name =, ms =, calls =},
--                largest first; report.total_ms, report.other_ms;
--   report.collector = {cycles =, ms =}
--   profile.format(report) -> the table as text lines.
local core = require "miles.core"

local profile = {}

-- While a profile runs: {gpu = index or false, rows = by key, open = the timers
-- running, innermost last: {inner = seconds of the timed pieces inside it,
-- child_nodes = seconds of backward nodes inside those, nodes = the node
-- seconds at its start}}.
local state

-- The time now, after the profiled GPU's queued work is done.
local function settled_now()
  if state.gpu then core.cuda_synchronize(state.gpu) end
  return core.wall_time()
end

local function add(phase, name, seconds)
  local key = phase .. "\0" .. name
  local row = state.rows[key]
  if not row then
    row = { phase = phase, name = name, ms = 0, calls = 0 }
    state.rows[key] = row
  end
  row.ms = row.ms + seconds * 1000
  row.calls = row.calls + 1
end

--- Is a profile running? (Module's call asks, to time leaf modules.)
function profile.active()
  return state ~= nil
end

--- f(...) timed as `phase` `name` when a profile runs (else just f(...)); its
-- row gets the time not spent in pieces inside it (backward nodes included).
function profile.timed(phase, name, f, ...)
  if not state then return f(...) end
  local open = state.open
  local timer = { inner = 0, child_nodes = 0, nodes = core.autograd_profile() }
  open[#open + 1] = timer
  local t0 = settled_now()
  local r = table.pack(pcall(f, ...))
  local dt = settled_now() - t0
  open[#open] = nil
  local nodes = core.autograd_profile() - timer.nodes -- (each node has its own row)
  add(phase, name, math.max(dt - timer.inner - (nodes - timer.child_nodes), 0))
  local parent = open[#open]
  if parent then
    parent.inner = parent.inner + dt
    parent.child_nodes = parent.child_nodes + nodes
  end
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

--- Mark a part of a profiled function (the optimizer step, say).
function profile.section(name, f, ...)
  return profile.timed("section", name, f, ...)
end

local function gpu_index(device)
  if not device or device == "cpu" then return false end
  local i = device:match("^cuda:?(%d*)$")
  assert(i, "miles.profile: device must be 'cpu', 'cuda' or 'cuda:N', not " .. tostring(device))
  return i == "" and 0 or tonumber(i)
end

function profile.run(fn, opts)
  assert(type(fn) == "function", "miles.profile: expects a function to run")
  assert(not state, "miles.profile: a profile is already running")
  opts = opts or {}
  for k in pairs(opts) do
    assert(k == "device" or k == "wait", "miles.profile: unknown option '" .. tostring(k) .. "'")
  end
  assert(opts.wait == nil or type(opts.wait) == "boolean", "miles.profile: wait must be a boolean")
  local gpu = gpu_index(opts.device)
  if gpu and gpu >= core.cuda_device_count() then
    error(("miles.profile: no GPU %s (%d seen)"):format(opts.device, core.cuda_device_count()), 0)
  end
  if opts.wait == false then gpu = false end
  if gpu then core.cuda_synchronize(gpu) end
  state = { gpu = gpu, rows = {}, open = {} }
  local t0, total
  core.autograd_profile(true, opts.wait ~= false)
  local cycles0, gc0 = core.collector_stats()
  local ok, err = pcall(function()
    t0 = settled_now()
    fn()
    total = (settled_now() - t0) * 1000
  end)
  local back = core.autograd_profile(false)
  local rows = state.rows
  state = nil
  if not ok then error(err, 0) end
  local cycles1, gc1 = core.collector_stats()
  local report = { rows = {}, total_ms = total,
                   collector = { cycles = cycles1 - cycles0, ms = (gc1 - gc0) * 1000 } }
  for _, r in pairs(rows) do report.rows[#report.rows + 1] = r end
  for name, b in pairs(back) do
    report.rows[#report.rows + 1] = { phase = "backward", name = name, ms = b.seconds * 1000,
                                      calls = b.calls }
  end
  table.sort(report.rows, function(a, b)
    if a.ms ~= b.ms then return a.ms > b.ms end
    return a.phase .. a.name < b.phase .. b.name
  end)
  local timed = 0
  for _, r in ipairs(report.rows) do timed = timed + r.ms end
  report.other_ms = math.max(total - timed, 0)
  return report
end

function profile.format(report)
  local lines = { ("  %-10s %-26s %10s %6s %7s"):format("phase", "name", "ms", "share", "calls") }
  local function line(phase, name, ms, calls)
    lines[#lines + 1] = ("  %-10s %-26s %10.3f %5.1f%% %7s"):format(phase, name, ms,
      report.total_ms > 0 and 100 * ms / report.total_ms or 0, calls)
  end
  for _, r in ipairs(report.rows) do line(r.phase, r.name, r.ms, tostring(r.calls)) end
  line("", "other", report.other_ms, "")
  line("", "total", report.total_ms, "")
  lines[#lines + 1] = ("  (in these, the Lua collector paced by tensor memory: %.3f ms in %d cycles)")
    :format(report.collector.ms, report.collector.cycles)
  return table.concat(lines, "\n")
end

return profile
