--- miles.sweep.plan: a sweep's cells and trials from its options, and the
-- trial folders with their config.json and the manifest <out>/sweep.json.
--
--   local plan = require "miles.sweep.plan"
--   local p = plan.make(opts, 2)   -- {out, cells, trials}; errors at the caller's caller
--   plan.prepare(p)                -- writes the folders, configs and manifest
--
-- opts and the layout: see miles.sweep. A cell is one row of a table: a method (or
-- an ablation variant: label plus fixed options) on a data set with a fusion; it
-- holds configurations 1..trials (miles.sweep.space) and each runs once per seed.
-- The cells of MSLR methods get their data set's unimodal stage (cell
-- "<dataset>/unimodal/search"), placed first, and wait for it (trial.after).
local fs = require "miles.fs"
local rules = require "miles.rules"
local space = require "miles.sweep.space"
local files = require "miles.sweep.files"

local plan = {}

--- The methods of the paper's Tables II and III, in the paper's row order.
plan.METHODS = { "vanilla", "mslr_k", "mslr_s", "mslr_d", "ogm", "ogm_ge", "mses", "gblend", "miles" }

--- Row titles of the methods.
plan.TITLES = { vanilla = "Vanilla", mslr_k = "+ MSLR-K", mslr_s = "+ MSLR-S", mslr_d = "+ MSLR-D",
                ogm = "+ OGM", ogm_ge = "+ OGM-GE", mses = "+ MSES", gblend = "+ G-Blend", miles = "+ MILES",
                unimodal = "unimodal stage" }

--- Rules the sweep provides itself (config.json names them; run_trial builds them).
plan.STAGE_RULES = { unimodal = "miles.sweep.unimodal" }

local FORMAT = "miles.sweep/1"

-- A data set name as a folder name ("cremad:/data/x" -> "cremad_data_x").
function plan.slug(dataset)
  return (dataset:gsub("[^%w_.-]+", "_"):gsub("^_+", ""):gsub("_+$", ""))
end

-- Validation errors inside the planner carry no position: plan.make re-raises
-- them at the level it is given.
local function fail(msg) error(msg, 0) end

-- v must be an integer (>= lo when lo is given).
local function check_int(v, what, lo)
  if math.type(v) ~= "integer" or (lo and v < lo) then
    fail(("sweep: %s must be an integer%s, got %s"):format(what, lo and (" >= " .. lo) or "", tostring(v)))
  end
end

local function list_of(v, single)
  if v == nil then return single end
  if type(v) == "string" then return { v } end
  return v
end

-- The cell table for c (checked), with its id.
local function make_cell(c, o)
  if type(c.method) ~= "string" then fail("sweep: a cell needs a method, got " .. tostring(c.method)) end
  space.of(c.method)
  if not plan.STAGE_RULES[c.method] and not rules[c.method] then
    fail(("sweep: rule '%s' is not available (no lua/miles/rules/%s.lua)"):format(c.method, c.method))
  end
  if type(c.dataset) ~= "string" then fail("sweep: a cell needs a dataset name, got " .. tostring(c.dataset)) end
  if c.fusion ~= "concat" and c.fusion ~= "sum" then
    fail("sweep: fusion must be 'concat' or 'sum', got " .. tostring(c.fusion))
  end
  local label = c.label or c.method
  if type(label) ~= "string" or not label:match("^[%w_.=+-]+$") then
    fail("sweep: a label must be a word of letters, digits and _.=+-, got " .. tostring(label))
  end
  local trials = c.trials or o.trials or 1
  check_int(trials, "trials", 1)
  local fixed = { lr = (c.fixed or {}).lr or (o.fixed or {}).lr, rule_opts = {} }
  for _, f in ipairs({ o.fixed or {}, c.fixed or {} }) do
    for k, v in pairs(f.rule_opts or {}) do fixed.rule_opts[k] = v end
  end
  local kind = c.method == "unimodal" and "unimodal" or nil
  local fusion_dir = kind and "unimodal" or c.fusion
  return { id = plan.slug(c.dataset) .. "/" .. fusion_dir .. "/" .. (kind and "search" or label), label = label,
           title = c.title or plan.TITLES[c.method] or label, method = c.method, dataset = c.dataset,
           fusion = c.fusion, kind = kind, trials = trials, fixed = fixed }
end

-- The cells of opts: the explicit list or the grid; unimodal stages first.
local function cells_of(opts)
  local list = opts.cells
  if not list then
    list = {}
    for _, d in ipairs(list_of(opts.datasets or opts.dataset, {})) do
      for _, f in ipairs(list_of(opts.fusions or opts.fusion, { "concat" })) do
        for _, m in ipairs(list_of(opts.methods, {})) do list[#list + 1] = { method = m, dataset = d, fusion = f } end
      end
    end
  end
  if #list == 0 then fail("sweep: no cells (give datasets and methods, or cells)") end
  local cells, stages, stage_of = {}, {}, {}
  for _, c in ipairs(list) do
    local cell = make_cell(c, opts)
    if space.needs_unimodal(cell.method) then
      local stage = stage_of[cell.dataset]
      if not stage then
        stage = make_cell({ method = "unimodal", dataset = cell.dataset, fusion = "concat",
                            fixed = { lr = cell.fixed.lr } }, opts)
        stage.trials = 0
        stage_of[cell.dataset] = stage
        stages[#stages + 1] = stage
      end
      stage.trials = math.max(stage.trials, cell.trials)
      cell.after = stage.id
    end
    cells[#cells + 1] = cell
  end
  for i = #stages, 1, -1 do table.insert(cells, 1, stages[i]) end
  local ids = {}
  for _, c in ipairs(cells) do
    if ids[c.id] then fail("sweep: two cells have the id " .. c.id .. " (give them different labels)") end
    ids[c.id] = true
  end
  return cells
end

-- The plan of opts (checked by make_plan).
local function build_plan(opts)
  local seeds = opts.seeds or { 0 }
  if #seeds == 0 then fail("sweep: give at least one seed") end
  for _, s in ipairs(seeds) do check_int(s, "a seed") end
  local epochs, batch = opts.epochs or 10, opts.batch_size or 64
  check_int(epochs, "epochs", 1)
  check_int(batch, "batch_size", 1)
  local sample_seed = opts.sample_seed or 0
  check_int(sample_seed, "sample_seed")
  local out = opts.out:gsub("/+$", "")
  local cells = cells_of(opts)
  local trials = {}
  for _, cell in ipairs(cells) do
    cell.seeds, cell.epochs = seeds, epochs
    local key = ("%d|%s|%s|%s"):format(sample_seed, cell.dataset, cell.fusion, cell.method)
    for index = 1, cell.trials do
      local s = space.sample(cell.method, key, index, cell.fixed)
      for _, seed in ipairs(seeds) do
        local id = ("%s/c%02d-s%d"):format(cell.id, index, seed)
        local config = { id = id, cell = cell.id, method = cell.method, label = cell.label, index = index,
                         seed = seed, unimodal_lrs = cell.after, keep_checkpoints = opts.keep_checkpoints or nil,
                         run = { dataset = cell.dataset, fusion = cell.fusion, rule = cell.method,
                                 rule_opts = s.rule_opts, lr = s.lr, epochs = epochs, batch_size = batch,
                                 seed = seed, device = opts.device, autocast = opts.autocast } }
        trials[#trials + 1] = { id = id, dir = out .. "/" .. id, cell = cell.id, index = index, seed = seed,
                                after = cell.after, config = config }
      end
    end
  end
  return { out = out, cells = cells, trials = trials }
end

--- The plan of a sweep: {out, cells, trials}; each trial {id, dir, cell, index,
-- seed, after, config} (config: the content of its config.json). Writes nothing.
-- Validation errors are raised at `level` (counted from the caller of make).
function plan.make(opts, level)
  local ok, p = pcall(function()
    if type(opts) ~= "table" or type(opts.out) ~= "string" then fail("sweep: give {out = folder, ...}") end
    return build_plan(opts)
  end)
  if not ok then error((tostring(p):gsub("^[^:\n]+:%d+: ", "")), level + 1) end
  return p
end

-- The manifest of out merged with the plan's cells and trials (the plan's win).
local function merged_manifest(p)
  local old = files.read_json(p.out .. "/sweep.json") or { format = FORMAT, cells = {}, trials = {} }
  if old.format ~= FORMAT then
    error(("sweep: %s/sweep.json has format %s, expected %s"):format(p.out, tostring(old.format), FORMAT), 3)
  end
  local m = { format = FORMAT, cells = {}, trials = {} }
  for _, kind in ipairs({ "cells", "trials" }) do
    local pos = {}
    local function put(rec)
      if pos[rec.id] then m[kind][pos[rec.id]] = rec else
        m[kind][#m[kind] + 1] = rec
        pos[rec.id] = #m[kind]
      end
    end
    for _, rec in ipairs(old[kind] or {}) do put(rec) end
    for _, rec in ipairs(p[kind]) do
      if kind == "cells" then
        put({ id = rec.id, label = rec.label, title = rec.title, method = rec.method, dataset = rec.dataset,
              fusion = rec.fusion, kind = rec.kind, trials = rec.trials, seeds = rec.seeds, epochs = rec.epochs,
              fixed = rec.fixed, after = rec.after })
      else
        put({ id = rec.id, cell = rec.cell, index = rec.index, seed = rec.seed, after = rec.after })
      end
    end
  end
  return m
end

--- Write the plan's trial folders with their config.json, and the manifest. A
-- trial folder whose config.json differs from the plan's is an error (another
-- sweep used this folder with other settings).
function plan.prepare(p)
  for _, t in ipairs(p.trials) do
    local path = t.dir .. "/config.json"
    local text = files.json(t.config)
    local old = fs.read(path)
    if old and old ~= text then
      error(("sweep: %s exists with another configuration (epochs, seeds, sample seed or ranges changed?);" ..
        " use another --out or remove it"):format(path), 2)
    end
    if not old then
      fs.mkdir(t.dir)
      fs.write(path, text)
    end
  end
  fs.mkdir(p.out)
  files.write_json(p.out .. "/sweep.json", merged_manifest(p))
end

return plan
