--- miles.sweep.report: the paper's table layout for gathered cells, as aligned
-- text and as Markdown.
--
--   local report = require "miles.sweep.report"
--   local tbl = report.table(cells, { best_epoch = true, val = true, config = true, progress = true })
--   print(report.text(tbl)); fs.write("t.md", report.markdown(tbl))
--   for _, line in ipairs(report.unimodal(cells)) do print(line) end
--
-- One row per cell (its title, else its label); columns: Fusion (when the cells
-- have more than one), the test metric of the fused head, of each modality's head
-- (sorted by name) and delta (the gap between the heads), as percentages, mean ±
-- std over seeds (the mean alone for one seed); optional columns: the best epoch,
-- the fused validation metric, the selected configuration and how many trials
-- have finished. A cell with no complete configuration shows "-".
local report = {}

local function pct(s)
  if not s or s.n == 0 or s.mean ~= s.mean then return "-" end
  if s.n == 1 then return ("%.1f"):format(100 * s.mean) end
  return ("%.1f ± %.1f"):format(100 * s.mean, 100 * s.std)
end

local function plain(s)
  if not s or s.n == 0 or s.mean ~= s.mean then return "-" end
  if s.n == 1 then return ("%.4g"):format(s.mean) end
  return ("%.1f ± %.1f"):format(s.mean, s.std)
end

-- "lr 0.00151, mu 0.1, tau 0.3" (tables such as MSLR's lrs as name=value).
function report.config(sel)
  local parts = { ("lr %.3g"):format(sel.lr) }
  local keys = {}
  for k in pairs(sel.rule_opts or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = sel.rule_opts[k]
    if type(v) == "table" then
      local inner = {}
      for name, x in pairs(v) do inner[#inner + 1] = ("%s=%.3g"):format(name, x) end
      table.sort(inner)
      v = table.concat(inner, ",")
    elseif type(v) == "number" then
      v = ("%.3g"):format(v)
    end
    parts[#parts + 1] = k .. " " .. tostring(v)
  end
  return table.concat(parts, ", ")
end

--- {header = {...}, align = {"l" | "r", ...}, rows = {{...}}} for the cells
-- (unimodal stages left out).
-- opts: best_epoch, val, config, progress (booleans: the optional columns).
function report.table(cells, opts)
  opts = opts or {}
  local heads, seen, fusions, nf, metric = {}, {}, {}, 0, nil
  local list = {}
  for _, c in ipairs(cells) do
    if c.kind ~= "unimodal" then
      list[#list + 1] = c
      if not fusions[c.fusion] then fusions[c.fusion], nf = true, nf + 1 end
      local sel = c.selected
      if sel then
        metric = metric or sel.metric
        for k in pairs(sel.test) do
          if k ~= "fused" and k ~= "delta" and not seen[k] then seen[k] = true; heads[#heads + 1] = k end
        end
      end
    end
  end
  table.sort(heads)
  local header, align = {}, {}
  local function col(name, a) header[#header + 1], align[#header + 1] = name, a end
  if nf > 1 then col("Fusion", "l") end
  col("Method", "l")
  col("fused (test " .. (metric or "metric") .. ")", "r")
  for _, h in ipairs(heads) do col(h, "r") end
  col("Δ", "r")
  if opts.best_epoch then col("best epoch", "r") end
  if opts.val then col("fused (val)", "r") end
  if opts.config then col("selected configuration", "l") end
  if opts.progress then col("trials done", "r") end
  local rows = {}
  for i, c in ipairs(list) do
    local sel, row = c.selected, {}
    local test = sel and sel.test or {}
    if nf > 1 then row[#row + 1] = c.fusion end
    row[#row + 1] = c.title or c.label
    row[#row + 1] = pct(test.fused)
    for _, h in ipairs(heads) do row[#row + 1] = pct(test[h]) end
    row[#row + 1] = pct(test.delta)
    if opts.best_epoch then row[#row + 1] = plain(sel and sel.best_epoch) end
    if opts.val then row[#row + 1] = pct(sel and sel.val.fused) end
    if opts.config then row[#row + 1] = sel and report.config(sel) or "-" end
    if opts.progress then row[#row + 1] = ("%d/%d"):format(c.finished, c.trials) end
    rows[i] = row
  end
  return { header = header, align = align, rows = rows }
end

--- The table as aligned text.
function report.text(tbl)
  local width = {}
  local all = { tbl.header }
  for _, r in ipairs(tbl.rows) do all[#all + 1] = r end
  for _, r in ipairs(all) do
    for j, cell in ipairs(r) do width[j] = math.max(width[j] or 0, utf8.len(cell) or #cell) end
  end
  local lines = {}
  for i, r in ipairs(all) do
    local cells = {}
    for j, cell in ipairs(r) do cells[j] = cell .. (" "):rep(width[j] - (utf8.len(cell) or #cell)) end
    lines[#lines + 1] = table.concat(cells, "  "):gsub("%s+$", "")
    if i == 1 then
      local rule = {}
      for j = 1, #r do rule[j] = ("-"):rep(width[j]) end
      lines[#lines + 1] = table.concat(rule, "  ")
    end
  end
  return table.concat(lines, "\n")
end

--- The table in Markdown.
function report.markdown(tbl)
  local lines = { "| " .. table.concat(tbl.header, " | ") .. " |" }
  local rule = {}
  for j = 1, #tbl.header do rule[j] = tbl.align[j] == "r" and "---:" or "---" end
  lines[2] = "|" .. table.concat(rule, "|") .. "|"
  for _, r in ipairs(tbl.rows) do lines[#lines + 1] = "| " .. table.concat(r, " | ") .. " |" end
  return table.concat(lines, "\n")
end

--- One line per unimodal stage: the learning rate chosen for each modality.
function report.unimodal(cells)
  local lines = {}
  for _, c in ipairs(cells) do
    if c.kind == "unimodal" then
      local parts = {}
      for name, d in pairs(c.unimodal or {}) do
        parts[#parts + 1] = ("%s lr %.3g (val %s, configuration %d)"):format(name, d.lr, pct(d.val), d.index)
      end
      table.sort(parts)
      lines[#lines + 1] = ("unimodal stage %s (%d/%d trials): %s"):format(c.dataset, c.finished, c.trials,
        #parts > 0 and table.concat(parts, "; ") or "no complete configuration yet")
    end
  end
  return lines
end

return report
