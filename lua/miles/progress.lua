--- miles.progress: progress bars for long work (building a data set's cache, ...).
--
--   local progress = require "miles.progress"
--   local bar = progress.new({ label = "clips", total = n })
--   for i = 1, n do ...; bar:update(i) end
--   bar:finish()
--
-- On a terminal the bar is redrawn in place ("\r") at most every `interval`
-- seconds: label, bar, percentage, count, rate and ETA. Elsewhere (a log file, a
-- pipe) it prints plain lines: at the start, every 10% (or `every` seconds), and
-- at the end. MILES_PROGRESS=0 in the environment silences every bar.
local core = require "miles.core"

local progress = {}

local Bar = {}
Bar.__index = Bar

-- Is the stream a terminal? Only the standard streams can be asked.
local function stream_is_tty(stream)
  if stream == io.stderr then return core._data.isatty(2) end
  if stream == io.stdout then return core._data.isatty(1) end
  return false
end

--- "1:05", "1:02:03" or "?" for a number of seconds.
function progress.format_time(s)
  if not s or s ~= s or s == math.huge or s < 0 then return "?" end
  s = math.floor(s + 0.5)
  local h, m, sec = s // 3600, (s % 3600) // 60, s % 60
  if h > 0 then return ("%d:%02d:%02d"):format(h, m, sec) end
  return ("%d:%02d"):format(m, sec)
end

--- progress.new{label=, total=, stream = io.stderr, tty = (auto), width = 30,
-- interval = 0.1, every = 30, quiet = false, sparse = false, clock = core.wall_time}:
-- a bar. sparse: off a terminal, only the lines every `every` seconds (no start,
-- 10% or end lines), for work whose caller prints its own summary.
function progress.new(opts)
  opts = opts or {}
  local stream = opts.stream or io.stderr
  local quiet = opts.quiet
  if quiet == nil then quiet = os.getenv("MILES_PROGRESS") == "0" end
  local tty = opts.tty
  if tty == nil then tty = stream_is_tty(stream) end
  local clock = opts.clock or core.wall_time
  local self = setmetatable({
    label = opts.label or "", total = opts.total, stream = stream, tty = tty,
    width = opts.width or 30, interval = opts.interval or 0.1, every = opts.every or 30,
    quiet = quiet, clock = clock, done = 0, start = clock(), last_draw = -math.huge,
    last_decile = -1, finished = false, sparse = opts.sparse,
  }, Bar)
  if not tty then
    if not self.sparse then self:_line() end
    self.last_decile, self.last_draw = 0, self.start
  end
  return self
end

-- Seconds since the start, items per second and the estimated seconds left.
function Bar:_rates()
  local elapsed = self.clock() - self.start
  local rate = elapsed > 0 and self.done / elapsed or nil
  local eta = (rate and rate > 0 and self.total) and (self.total - self.done) / rate or nil
  return elapsed, rate, eta
end

-- The text after the label: bar, percentage, count, rate, ETA (or elapsed at the end).
function Bar:_status(final)
  local elapsed, rate, eta = self:_rates()
  local parts = {}
  if self.total and self.total > 0 then
    local frac = math.min(1, self.done / self.total)
    if self.tty then
      local fill = math.floor(frac * self.width + 0.5)
      parts[#parts + 1] = "[" .. ("#"):rep(fill) .. ("."):rep(self.width - fill) .. "]"
    end
    parts[#parts + 1] = ("%3d%%"):format(math.floor(frac * 100))
    parts[#parts + 1] = ("%d/%d"):format(self.done, self.total)
  else
    parts[#parts + 1] = tostring(self.done)
  end
  if rate then
    parts[#parts + 1] = (rate >= 100 and "%.0f/s" or rate >= 1 and "%.1f/s" or "%.2f/s"):format(rate)
  end
  if final then
    parts[#parts + 1] = "in " .. progress.format_time(elapsed)
  elseif eta then
    parts[#parts + 1] = "ETA " .. progress.format_time(eta)
  end
  return table.concat(parts, "  ")
end

-- A plain line (not a terminal).
function Bar:_line(final)
  if self.quiet then return end
  self.stream:write(self.label, ": ", self:_status(final), "\n")
  self.stream:flush()
end

-- Redraw in place (a terminal).
function Bar:_draw(final)
  if self.quiet then return end
  self.stream:write("\r", self.label, "  ", self:_status(final), "\27[K", final and "\n" or "")
  self.stream:flush()
end

--- bar:update(done [, total]): the work done so far (and the total, if it changed).
function Bar:update(done, total)
  if self.finished then return end
  if total then self.total = total end
  self.done = done
  local now = self.clock()
  if self.tty then
    if now - self.last_draw >= self.interval then
      self.last_draw = now
      self:_draw(false)
    end
    return
  end
  local decile = self.total and self.total > 0 and math.floor(10 * done / self.total) or -1
  if (not self.sparse and decile > self.last_decile and decile < 10) or now - self.last_draw >= self.every then
    self.last_decile = math.max(self.last_decile, decile)
    self.last_draw = now
    self:_line(false)
  end
end

--- bar:finish(): the final state (100% when a total is known), and a newline.
function Bar:finish()
  if self.finished then return end
  self.finished = true
  if self.total and self.done < self.total then self.done = self.total end
  if self.tty then self:_draw(true) elseif not self.sparse then self:_line(true) end
end

--- progress.tracker(opts) -> fn(label, done, total), with fn.finish(): one bar
-- per label, the previous one finished when the label changes (the shape of the
-- `progress` argument that cache builders receive).
function progress.tracker(opts)
  opts = opts or {}
  local bar
  local t = {}
  function t.finish()
    if bar then bar:finish() end
    bar = nil
  end
  setmetatable(t, { __call = function(_, label, done, total)
    label = tostring(label or "")
    if not bar or bar.label ~= label then
      t.finish()
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      o.label, o.total = label, total
      bar = progress.new(o)
    end
    bar:update(done, total)
  end })
  return t
end

return progress
