--- miles.plot: pictures of a training run. The paper's Fig. 2 as a PNG (with
-- gnuplot) and text sparklines of logged columns for the REPL.
--
--   local plot = require "miles.plot"        -- also miles.plot
--   plot.fig2(t, "runs/miles/fig2.png")      -- a trainer, its t.history, or a run
--   plot.fig2("runs/miles", "fig2.png", { tau = 0.2, title = "MILES, concat" })
--   print(plot.sparkline(t, "u_audio"))      -- ▁▃▅█▇▆ min 0.01 max 0.43
--   print(plot.sparkline({ 1, 0 / 0, 3 }))   -- ▁ █ min 1 max 3
--   plot.columns(t)                          -- the column names, in log order
--
-- A source is a trainer (its history and columns), a list of log rows (tables
-- column -> value, as t.history), or the path of a run folder or its log.csv
-- (miles.log's format: empty cells are NaN).
local csv = require "miles.csv"

local plot = {}

local NAN = 0 / 0
local BLOCKS = { "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█" }

-- Values of a CSV cell: empty -> NaN, a number, else the text.
local function csv_value(cell, quoted)
  if quoted then return cell end
  if cell == "" then return NAN end
  return tonumber(cell) or cell
end

-- rows, columns of a log.csv file.
local function read_log(path)
  local f = io.open(path .. "/log.csv", "rb")
  if f then path = path .. "/log.csv" else f = io.open(path, "rb") end
  local text = f and f:read("a")
  if f then f:close() end
  if not text then error("plot: cannot read " .. path .. " (give a run folder or its log.csv)", 3) end
  local ok, records = pcall(csv.parse, text, csv_value)
  if not ok then error("plot: " .. path .. ": " .. records, 3) end
  local header = records[1]
  if not header then error("plot: " .. path .. " is empty", 3) end
  local rows = {}
  for r = 2, #records do
    local row = {}
    for k, name in ipairs(header) do row[name] = records[r][k] end
    rows[r - 1] = row
  end
  return rows, header
end

-- The column names of a list of rows: "epoch" first, then the others sorted.
local function row_columns(rows)
  local seen, cols = {}, {}
  for _, row in ipairs(rows) do
    for k in pairs(row) do
      if not seen[k] and k ~= "epoch" then seen[k] = true; cols[#cols + 1] = k end
    end
  end
  table.sort(cols)
  if rows[1] and rows[1].epoch ~= nil then table.insert(cols, 1, "epoch") end
  return cols
end

--- rows, columns of a source (a trainer, a list of rows, or a log path).
function plot.load(source)
  if type(source) == "string" then return read_log(source) end
  if type(source) ~= "table" then
    error("plot: give a trainer, a history (list of rows) or a log path, got " .. type(source), 3)
  end
  if type(source.history) == "table" then return source.history, source.columns or row_columns(source.history) end
  return source, row_columns(source)
end

--- The column names of a source, in log order.
function plot.columns(source)
  local _, cols = plot.load(source)
  return cols
end

-- The values of one column (NaN where a row lacks a number).
local function column_values(rows, cols, name)
  local found = false
  for _, c in ipairs(cols) do if c == name then found = true end end
  if not found then
    error(("plot: no column '%s' (columns: %s)"):format(tostring(name), table.concat(cols, ", ")), 3)
  end
  local v = {}
  for i, row in ipairs(rows) do
    local x = row[name]
    v[i] = type(x) == "number" and x or NAN
  end
  return v
end

local function finite(x)
  return x == x and x ~= math.huge and x ~= -math.huge
end

--- A one-line sparkline of numbers: one block per value, scaled from the
-- smallest (▁) to the largest (█); NaN and infinities are blanks. Followed by
-- "min <lo> max <hi>" (or "no values"). Give a list of numbers, or a source and
-- a column name.
function plot.sparkline(source, column)
  local values = source
  if column ~= nil then
    local rows, cols = plot.load(source)
    values = column_values(rows, cols, column)
  elseif type(source) ~= "table" then
    error("plot.sparkline: give a list of numbers, or a history and a column name", 2)
  end
  local lo, hi = math.huge, -math.huge
  for i, x in ipairs(values) do
    if type(x) ~= "number" then
      error(("plot.sparkline: value %d is %s, not a number"):format(i, tostring(x)), 2)
    end
    if finite(x) then lo, hi = math.min(lo, x), math.max(hi, x) end
  end
  local out = {}
  for i, x in ipairs(values) do
    if not finite(x) then
      out[i] = " "
    elseif hi == lo then
      out[i] = BLOCKS[4]
    else
      out[i] = BLOCKS[math.floor((x - lo) / (hi - lo) * 7 + 0.5) + 1]
    end
  end
  if lo > hi then return table.concat(out) .. " no values" end
  return ("%s min %.4g max %.4g"):format(table.concat(out), lo, hi)
end

-- A shell word.
local function sh(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- A gnuplot single-quoted string.
local function gp(s)
  return "'" .. tostring(s):gsub("'", "''") .. "'"
end

local function have_gnuplot()
  return os.execute("command -v gnuplot >/dev/null 2>&1") == true
end

-- "pngcairo" when this gnuplot has it, else "png" (asked once).
local terminal
local function png_terminal()
  if not terminal then
    local p = io.popen("gnuplot -e 'set terminal' 2>&1")
    local list = p:read("a")
    p:close()
    terminal = list:find("pngcairo", 1, true) and "pngcairo" or "png"
  end
  return terminal
end

-- The Fig. 2 series of a run: modalities (from u_<name>), lr groups (lr_<name>),
-- the validation metric (`want`, else the first val_<metric>_fused that is not
-- the loss) and its heads.
local function fig2_series(cols, want)
  local has, mods, groups, metric = {}, {}, {}, nil
  for _, c in ipairs(cols) do
    has[c] = true
    local m = c:match("^u_(.+)$")
    if m then mods[#mods + 1] = m end
    local g = c:match("^lr_(.+)$")
    if g then groups[#groups + 1] = g end
    local v = c:match("^val_(.+)_fused$")
    if v ~= "loss" then metric = metric or v end
  end
  if want then metric = has["val_" .. want .. "_fused"] and want or nil end
  local missing = {}
  if not has.epoch then missing[#missing + 1] = "epoch" end
  if #mods == 0 then missing[#missing + 1] = "u_<modality>" end
  if not has.delta then missing[#missing + 1] = "delta" end
  if #groups == 0 then missing[#missing + 1] = "lr_<group>" end
  if not metric then missing[#missing + 1] = "val_" .. (want or "<metric>") .. "_fused" end
  if #missing > 0 then
    error(("plot.fig2: the history lacks column(s) %s (columns: %s)"):format(table.concat(missing, ", "),
      table.concat(cols, ", ")), 3)
  end
  local heads = { "fused" }
  for _, m in ipairs(mods) do
    if has["val_" .. metric .. "_" .. m] then heads[#heads + 1] = m end
  end
  return mods, groups, metric, heads
end

-- Is any value of the column finite?
local function any_value(rows, name)
  for _, row in ipairs(rows) do
    local x = row[name]
    if type(x) == "number" and finite(x) then return true end
  end
  return false
end

-- One gnuplot panel: a plot command over the data file's columns `series`
-- ({column =, title =, with = gnuplot style}, or {const = y, ...}), or an empty
-- frame with a note when no series has a value.
local function panel(lines, data, index, rows, title, ylabel, series)
  lines[#lines + 1] = "set title " .. gp(title)
  lines[#lines + 1] = "set ylabel " .. gp(ylabel)
  local parts = {}
  for _, s in ipairs(series) do
    if s.const or any_value(rows, s.column) then
      local y = s.const and tostring(s.const) or tostring(index[s.column])
      parts[#parts + 1] = ("%s using 1:%s with %s title %s"):format(gp(data),
        s.const and ("(" .. y .. ")") or y, s.with or "linespoints", gp(s.title))
    end
  end
  if #parts == 0 then
    lines[#lines + 1] = ("set label 1 %s at graph 0.5, graph 0.5 center"):format(gp("(no values logged)"))
    lines[#lines + 1] = "plot [] [0:1] 2 notitle"
    lines[#lines + 1] = "unset label 1"
  else
    lines[#lines + 1] = "plot " .. table.concat(parts, ", \\\n     ")
  end
end

--- plot.fig2(source, png_path, opts): the paper's Fig. 2 for one run, as a PNG:
-- three panels against epochs: the conditional utilization rate u of each
-- modality and delta (with tau as a dashed line when known), the learning rate
-- of each parameter group, and the validation metric of each head. opts: tau
-- (default: the trainer's rule.tau when the source is a trainer), metric (default:
-- the trainer's, else the first val_<metric>_fused column other than the loss),
-- title, width, height (pixels, default 900 x 1000). Needs gnuplot (Debian: gnuplot-nox).
-- Returns png_path.
function plot.fig2(source, png_path, opts)
  opts = opts or {}
  if type(png_path) ~= "string" then error("plot.fig2: give the PNG path, got " .. tostring(png_path), 2) end
  local rows, cols = plot.load(source)
  if #rows == 0 then error("plot.fig2: the history has no rows", 2) end
  local want = opts.metric
  if want == nil and type(source) == "table" and type(source.metric) == "string" then want = source.metric end
  local mods, groups, metric, heads = fig2_series(cols, want)
  local tau = opts.tau
  if tau == nil and type(source) == "table" and type(source.rule) == "table" then tau = source.rule.tau end
  if tau ~= nil and (type(tau) ~= "number" or not finite(tau)) then
    error("plot.fig2: tau must be a number, got " .. tostring(tau), 2)
  end
  if not have_gnuplot() then
    error("plot.fig2: gnuplot is not installed (Debian: apt-get install gnuplot-nox)", 2)
  end

  -- the data file: epoch, then every numeric column used, NaN as "NaN"
  local used = { "epoch" }
  for _, m in ipairs(mods) do used[#used + 1] = "u_" .. m end
  used[#used + 1] = "delta"
  for _, g in ipairs(groups) do used[#used + 1] = "lr_" .. g end
  for _, h in ipairs(heads) do used[#used + 1] = "val_" .. metric .. "_" .. h end
  local index, text = {}, {}
  for k, c in ipairs(used) do index[c] = k end
  for i, row in ipairs(rows) do
    local cells = {}
    for k, c in ipairs(used) do
      local x = row[c]
      if c == "epoch" and type(x) ~= "number" then x = i end
      cells[k] = (type(x) == "number" and finite(x)) and ("%.10g"):format(x) or "NaN"
    end
    text[i] = table.concat(cells, " ")
  end
  local first = type(rows[1].epoch) == "number" and rows[1].epoch or 1
  local last = type(rows[#rows].epoch) == "number" and rows[#rows].epoch or #rows
  if last <= first then last = first + 1 end

  local data, script, err = os.tmpname(), os.tmpname(), os.tmpname()
  local function cleanup()
    os.remove(data); os.remove(script); os.remove(err)
  end
  local f = assert(io.open(data, "w"))
  f:write(table.concat(text, "\n"), "\n")
  f:close()

  local lines = {
    ("set terminal %s size %d,%d noenhanced"):format(png_terminal(), opts.width or 900, opts.height or 1000),
    "set output " .. gp(png_path),
    "set key outside right top",
    "set lmargin 12",
    "set rmargin 20",
    "set grid",
    ("set xrange [%g:%g]"):format(first, last),
    last - first <= 20 and "set xtics 1" or "set xtics",
    "set multiplot layout 3,1 title " .. gp(opts.title or "MILES: utilization, learning rates, validation"),
    "set xlabel 'epoch'",
  }
  local u_series = {}
  for _, m in ipairs(mods) do u_series[#u_series + 1] = { column = "u_" .. m, title = "u " .. m } end
  u_series[#u_series + 1] = { column = "delta", title = "delta" }
  if tau then u_series[#u_series + 1] = { const = tau, title = ("tau = %g"):format(tau), with = "lines dt 2 lc 'black'" } end
  panel(lines, data, index, rows, "conditional utilization rate", "u", u_series)
  lines[#lines + 1] = "set yrange [0:*]"
  local lr_series = {}
  for _, g in ipairs(groups) do lr_series[#lr_series + 1] = { column = "lr_" .. g, title = "lr " .. g } end
  panel(lines, data, index, rows, "learning rate per group", "learning rate", lr_series)
  lines[#lines + 1] = "set autoscale y"
  local val_series = {}
  for _, h in ipairs(heads) do val_series[#val_series + 1] = { column = "val_" .. metric .. "_" .. h, title = h } end
  panel(lines, data, index, rows, "validation " .. metric .. " per head", metric, val_series)
  lines[#lines + 1] = "unset multiplot"
  lines[#lines + 1] = "set output"
  f = assert(io.open(script, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()

  local ok = os.execute(("gnuplot %s 2>%s"):format(sh(script), sh(err)))
  local ef = io.open(err, "r")
  local msg = ef and ef:read("a") or ""
  if ef then ef:close() end
  cleanup()
  if not ok then
    error(("plot.fig2: gnuplot failed writing %s: %s"):format(png_path, msg:gsub("%s+$", "")), 2)
  end
  return png_path
end

return plot
