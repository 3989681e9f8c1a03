--- miles.sweep.pool: runs a sweep's trials as worker processes on this machine.
--
--   local pool = require "miles.sweep.pool"
--   local res = pool.run(trials, { workers = 2, threads = 1, host = "build/bin/miles",
--     script = "experiments/run_trial.lua", on_event = function(kind, trial) end })
--   -- res = {done = n, failed = {trial, ...}, started = n, adopted = n}
--
-- trials: a list of {id, dir, cell, after} in the order to start them; a trial is
-- finished when <dir>/result.json exists (it is skipped), and one with `after` (a
-- cell id) waits until no trial of that cell is pending or running. Each worker is
--   sh -c 'echo $$ > <dir>/worker.pid; exec <host> <script> <dir> <threads> >> <dir>/output.log 2>&1' &
-- started from a shell that exits at once, so the worker is no child of this
-- process and outlives it: when the sweep is killed (even with SIGKILL), running
-- workers finish their trial (or are killed with it), and a sweep started again
-- adopts the workers still alive (<dir>/worker.pid names a live process whose
-- command line holds the trial's folder) instead of starting the trial twice. A
-- worker that ended without result.json failed (its output.log says why); a later
-- run starts it again, from its checkpoint when the trainer wrote one.
-- Liveness comes from `ps` (zombies count as ended: some containers' init never
-- reaps orphans). A signal that ends the poll's `sleep` (Ctrl-C) stops the
-- running workers with SIGTERM and raises an error; their folders stay resumable.
local fs = require "miles.fs"

local pool = {}

pool.POLL_SECONDS = 0.1

--- The live processes among pids: {[pid] = command line}.
function pool.alive(pids)
  local out = {}
  if #pids == 0 then return out end
  local p = assert(io.popen("ps -ww -o pid=,stat=,args= -p " .. table.concat(pids, ",") .. " 2>/dev/null"))
  for line in p:lines() do
    local pid, stat, args = line:match("^%s*(%d+)%s+(%S+)%s+(.*)$")
    if pid and stat:sub(1, 1) ~= "Z" then out[tonumber(pid)] = args end
  end
  p:close()
  return out
end

-- Is the process of a worker pid (live: from pool.alive) running trial t? Its
-- command line holds the folder as a word of its own, quoted (the sh -c wrapper
-- before its exec) or not (the worker).
local function runs(live, pid, t)
  local args = pid and live[pid]
  return args and (" " .. args .. " "):find("[ ']" .. t.dir:gsub("%p", "%%%0") .. "[ ']") ~= nil
end

-- The pid in <dir>/worker.pid, or nil.
local function worker_pid(t)
  local s = fs.read(t.dir .. "/worker.pid")
  return s and math.tointeger(tonumber(s:match("%d+")))
end

-- Start the worker of trial t; returns its pid.
local function launch(t, o)
  local q = fs.quote
  local inner = ("echo $$ > %s; exec %s %s %s %d >> %s 2>&1"):format(q(t.dir .. "/worker.pid"), q(o.host),
    q(o.script), q(t.dir), o.threads, q(t.dir .. "/output.log"))
  local pid = tonumber(fs.capture(("sh -c %s </dev/null >/dev/null 2>&1 & echo $!"):format(q(inner))))
  if not pid then error("sweep: could not start the worker of " .. t.id, 3) end
  return math.tointeger(pid)
end

local function done(t) return fs.exists(t.dir .. "/result.json") end

--- Run the trials (see the top of the file); returns the counts.
function pool.run(trials, o)
  local workers = o.workers or 1
  if math.type(workers) ~= "integer" or workers < 1 then
    error("pool.run: workers must be an integer >= 1, got " .. tostring(workers), 2)
  end
  o = { workers = workers, threads = o.threads or 1, host = o.host or "build/bin/miles",
        script = o.script or "experiments/run_trial.lua", on_event = o.on_event or function() end }
  local state, open, running = {}, {}, {}   -- state by id; open trials (pending or running) by cell
  local res = { done = 0, failed = {}, started = 0, adopted = 0 }
  local pids = {}
  for _, t in ipairs(trials) do
    if done(t) then
      state[t.id] = "done"
    else
      state[t.id] = "pending"
      open[t.cell] = (open[t.cell] or 0) + 1
      pids[#pids + 1] = worker_pid(t)
    end
  end
  local live = pool.alive(pids)
  for _, t in ipairs(trials) do
    local pid = state[t.id] == "pending" and worker_pid(t)
    if runs(live, pid, t) then
      state[t.id] = "running"
      running[#running + 1] = { t = t, pid = pid }
      res.adopted = res.adopted + 1
      o.on_event("adopted", t)
    end
  end

  local function finish(r)
    local t = r.t
    open[t.cell] = open[t.cell] - 1
    if done(t) then
      state[t.id] = "done"
      res.done = res.done + 1
      o.on_event("done", t)
    else
      state[t.id] = "failed"
      res.failed[#res.failed + 1] = t
      o.on_event("failed", t)
    end
  end

  local function next_ready()
    for _, t in ipairs(trials) do
      if state[t.id] == "pending" and not (t.after and (open[t.after] or 0) > 0) then return t end
    end
  end

  while true do
    while #running < o.workers do
      local t = next_ready()
      if not t then break end
      state[t.id] = "running"
      running[#running + 1] = { t = t, pid = launch(t, o) }
      res.started = res.started + 1
      o.on_event("started", t)
    end
    if #running == 0 then break end
    local ok, how, code = os.execute("sleep " .. pool.POLL_SECONDS)
    if not ok and how == "signal" then
      local list = {}
      for i, r in ipairs(running) do list[i] = r.pid end
      os.execute("kill -TERM " .. table.concat(list, " ") .. " 2>/dev/null")
      error(("sweep: interrupted (signal %d); %d running trial(s) stopped, run the sweep again to resume")
        :format(code, #running), 0)
    end
    local list = {}
    for i, r in ipairs(running) do list[i] = r.pid end
    live = pool.alive(list)
    local still = {}
    for _, r in ipairs(running) do
      if runs(live, r.pid, r.t) then still[#still + 1] = r else finish(r) end
    end
    running = still
  end
  return res
end

return pool
