--- miles.sweep.gather: model selection over a sweep's results (what `gather` does).
--
--   local gather = require "miles.sweep.gather"
--   local cells = gather.cells(manifest, out)     -- one summary per cell
--   local lrs = gather.unimodal_lrs(manifest, out, "toy/unimodal/search")
--
-- A cell (data set, fusion, method or ablation variant) holds configurations
-- 1..N, each run once per seed (trial <cell>/cNN-s<seed>, result in
-- <out>/<trial>/result.json). A configuration is complete when every seed has a
-- result; the selected one is the complete configuration with the best mean
-- fused validation metric (the first on ties), as in the paper (Sec. IV-B). Its
-- summary: val, test (fused, each modality, delta) and best_epoch as
-- {mean, std, n, values} over seeds (std: sample standard deviation, 0 for
-- one seed), plus the configuration (lr, rule_opts as the trials ran them).
-- The unimodal stage (cell kind "unimodal") is selected per modality instead:
-- the configuration whose head of that modality reached the best validation
-- metric (each trial's best epoch for that head, mean over seeds).
local files = require "miles.sweep.files"

local gather = {}

--- {mean, std, n, values} of a list of numbers (std with n - 1; 0 for n = 1).
function gather.stats(values)
  local n, sum = #values, 0
  for _, v in ipairs(values) do sum = sum + v end
  local mean = n > 0 and sum / n or 0 / 0
  local ss = 0
  for _, v in ipairs(values) do ss = ss + (v - mean) ^ 2 end
  return { mean = mean, std = n > 1 and math.sqrt(ss / (n - 1)) or 0.0, n = n, values = values }
end

-- The trials of one cell grouped by configuration index, each with its result
-- (nil when not finished); and the number of finished trials.
local function by_config(manifest, out, cell_id)
  local configs, order, finished, total = {}, {}, 0, 0
  for _, t in ipairs(manifest.trials) do
    if t.cell == cell_id then
      total = total + 1
      local c = configs[t.index]
      if not c then
        c = { index = t.index, trials = {} }
        configs[t.index] = c
        order[#order + 1] = t.index
      end
      local r = files.read_json(out .. "/" .. t.id .. "/result.json")
      if r then finished = finished + 1 end
      c.trials[#c.trials + 1] = { id = t.id, seed = t.seed, result = r }
    end
  end
  table.sort(order)
  local list = {}
  for i, k in ipairs(order) do list[i] = configs[k] end
  return list, finished, total
end

local function complete(c)
  for _, t in ipairs(c.trials) do
    if not t.result then return false end
  end
  return true
end

-- Mean over the trials of c of f(result).
local function mean_of(c, f)
  local s = 0
  for _, t in ipairs(c.trials) do s = s + f(t.result) end
  return s / #c.trials
end

-- The summary of configuration c: stats over seeds of every key of val and test.
local function summarize(c)
  local first = c.trials[1].result
  local s = { index = c.index, lr = first.config.run.lr, rule_opts = first.config.run.rule_opts,
              metric = first.metric, seeds = {}, ids = {}, val = {}, test = {} }
  for i, t in ipairs(c.trials) do s.seeds[i], s.ids[i] = t.seed, t.id end
  for _, split in ipairs({ "val", "test" }) do
    for key in pairs(first[split] or {}) do
      local v = {}
      for i, t in ipairs(c.trials) do v[i] = (t.result[split] or {})[key] or 0 / 0 end
      s[split][key] = gather.stats(v)
    end
  end
  local be = {}
  for i, t in ipairs(c.trials) do be[i] = t.result.best_epoch or 0 / 0 end
  s.best_epoch = gather.stats(be)
  return s
end

-- The complete configuration with the largest score(c), the first on ties.
local function best(configs, score)
  local top, top_score
  for _, c in ipairs(configs) do
    if complete(c) then
      local v = score(c)
      if v == v and (not top or v > top_score) then top, top_score = c, v end
    end
  end
  return top
end

--- The summaries of the manifest's cells (only those whose ids are in `only`,
-- in that order, when given).
function gather.cells(manifest, out, only)
  local cells = manifest.cells
  if only then
    local by_id = {}
    for _, c in ipairs(manifest.cells) do by_id[c.id] = c end
    cells = {}
    for i, id in ipairs(only) do
      cells[i] = by_id[id] or error("sweep.gather: no cell '" .. id .. "' in " .. out .. "/sweep.json", 3)
    end
  end
  local out_cells = {}
  for i, cell in ipairs(cells) do
    local configs, finished, total = by_config(manifest, out, cell.id)
    local s = { id = cell.id, label = cell.label, title = cell.title, method = cell.method, dataset = cell.dataset,
                fusion = cell.fusion, kind = cell.kind, trials = total, finished = finished, configs = #configs,
                seeds = cell.seeds, epochs = cell.epochs }
    local n_complete = 0
    for _, c in ipairs(configs) do
      if complete(c) then n_complete = n_complete + 1 end
    end
    s.complete = n_complete
    if cell.kind == "unimodal" then
      s.lrs, s.unimodal = gather.unimodal_lrs(manifest, out, cell.id, configs)
    else
      local c = best(configs, function(c) return mean_of(c, function(r) return (r.val or {}).fused or 0 / 0 end) end)
      s.selected = c and summarize(c)
    end
    out_cells[i] = s
  end
  return out_cells
end

--- The per-modality learning rates chosen by the unimodal stage `cell_id`:
-- {name = lr}, and {name = {lr, index, val = stats}}; nil when no configuration
-- of the stage is complete. (configs: the cell's grouped trials, if at hand.)
function gather.unimodal_lrs(manifest, out, cell_id, configs)
  configs = configs or by_config(manifest, out, cell_id)
  local names = {}
  for _, c in ipairs(configs) do
    if complete(c) then
      for name in pairs(c.trials[1].result.best_head or {}) do names[name] = true end
    end
  end
  local lrs, detail = {}, {}
  for name in pairs(names) do
    local c = best(configs, function(c) return mean_of(c, function(r) return r.best_head[name].value end) end)
    local v = {}
    for i, t in ipairs(c.trials) do v[i] = t.result.best_head[name].value end
    lrs[name] = c.trials[1].result.config.run.lr
    detail[name] = { lr = lrs[name], index = c.index, val = gather.stats(v) }
  end
  if next(lrs) == nil then return nil end
  return lrs, detail
end

return gather
