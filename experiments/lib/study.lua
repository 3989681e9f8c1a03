--- experiments/lib/study.lua: the shared driver of experiments/sweep.lua, the
-- paper's tables (table2.lua, table3.lua) and ablations (ablation_*.lua): flags
-- -> cells of miles.sweep -> run them (or write Slurm job arrays, or only gather)
-- -> the table printed, and written as Markdown and JSON.
--
--   require("lib.study").table{ name = "table2", fusion = "concat", title = "..." }
--   require("lib.study").ablation{ name = "ablation_tau", title = "...", key = "tau",
--     symbol = "τ", values = { 0.5, 0.3, 0.2, 0.1, 0.0 }, fixed = { mu = 0.5 } }
--
-- A table: one cell per method (sweep.METHODS unless --methods) on one data set
-- and one fusion. An ablation: MILES with rule option `key` set to each value
-- (and `fixed` options), for each fusion; with --trials N > 1 the options not
-- fixed (the learning rate, and tau / mu when they are not ablated or fixed) are
-- searched per variant, with the same sampled values for every variant.
local fs = require "miles.fs"
local sweep = require "miles.sweep"
local report = require "miles.sweep.report"
local files = require "miles.sweep.files"
local cli = require "lib.cli"

local study = {}

--- The flags every study script takes.
study.FLAGS = { "dataset", "epochs", "seeds", "trials", "workers", "threads", "batch_size", "device", "autocast", "lr", "sample_seed",
                "out", "md", "json", "gather", "slurm", "keep_checkpoints", "partition", "time", "cpus", "mem",
                "gpus", "account", "array_max", "throttle" }

local function with(list, ...)
  local out = table.move(list, 1, #list, 1, {})
  for _, v in ipairs({ ... }) do out[#out + 1] = v end
  return out
end

--- The defaults of a study named `name`.
function study.defaults(name)
  return { dataset = { "spoken_fashion" }, epochs = 10, seeds = { 0 }, trials = 1, out = "runs/" .. name }
end

--- The miles.sweep options of the parsed flags o for the given cells.
function study.sweep_opts(o, cells)
  return { out = o.out, cells = cells, datasets = o.dataset, fusions = o.fusion, methods = o.methods,
           trials = o.trials, seeds = o.seeds, epochs = o.epochs, batch_size = o.batch_size,
           sample_seed = o.sample_seed, fixed = o.lr and { lr = o.lr } or nil,
           keep_checkpoints = o.keep_checkpoints, device = o.device, autocast = o.autocast }
end

--- Run the sweep of sopts as the flags say: --slurm writes job arrays (returns
-- nil), --gather only reads results, otherwise the missing trials run first.
-- Returns the gathered cells of the plan.
function study.execute(o, sopts)
  if o.slurm then
    local written = sweep.slurm(sopts, { partition = o.partition, time = o.time, cpus = o.cpus or o.threads,
      mem = o.mem, gpus = o.gpus, account = o.account, array_max = o.array_max, throttle = o.throttle })
    if not written then
      print("every trial in " .. sopts.out .. " is finished; nothing to submit")
    else
      print(("%d trial(s) in %s; submit with:  sh %s"):format(written.trials,
        table.concat(written.scripts, ", "), written.submit))
    end
    return nil
  end
  local ids = {}
  for i, c in ipairs(sweep.plan(sopts).cells) do ids[i] = c.id end
  if o.gather then return sweep.gather(sopts.out, ids) end
  local cells, res = sweep.run(sopts, { workers = o.workers, threads = o.threads })
  if #res.failed > 0 then
    print(("%d trial(s) failed (see their output.log); run again to retry them"):format(#res.failed))
  end
  return cells
end

-- The distinct values of key over the cells (unimodal stages left out), as text.
local function distinct(cells, key)
  local seen, out = {}, {}
  for _, c in ipairs(cells) do
    local v = c[key]
    if type(v) == "table" then v = table.concat(v, ",") end
    if c.kind ~= "unimodal" and v ~= nil and not seen[v] then seen[v] = true; out[#out + 1] = tostring(v) end
  end
  return table.concat(out, " / ")
end

--- The budget of the cells as text: epochs, configurations per cell, seeds.
function study.budget(cells)
  return ("%s epoch(s), %s configuration(s) per row, seeds %s"):format(distinct(cells, "epochs"),
    distinct(cells, "configs"), distinct(cells, "seeds"))
end

-- The command line that ran this script.
local function command()
  local parts = { "build/bin/miles", arg[0] }
  for _, a in ipairs(arg) do parts[#parts + 1] = a:find("[%s'\"]") and fs.quote(a) or a end
  return table.concat(parts, " ")
end

--- Print the cells' table (one per data set) and write the Markdown and JSON
-- files (o.md, o.json; default <out>/<name>.md and .json). columns: the optional
-- columns of miles.sweep.report.table.
function study.report(cells, o, name, title, columns)
  local datasets, by = {}, {}
  for _, c in ipairs(cells) do
    if not by[c.dataset] then by[c.dataset] = {}; datasets[#datasets + 1] = c.dataset end
    table.insert(by[c.dataset], c)
  end
  local budget = study.budget(cells)
  local md = { "# " .. title, "", "Budget: " .. budget .. ". Metrics: test set, percent, mean ± std over seeds;" ..
    " the configuration with the best mean fused validation metric is selected.", "" }
  print(title .. " (" .. budget .. ")")
  for _, d in ipairs(datasets) do
    local tbl = report.table(by[d], columns)
    local notes = report.unimodal(by[d])
    print("\n" .. d .. "\n" .. report.text(tbl))
    md[#md + 1] = "## " .. d
    md[#md + 1] = ""
    md[#md + 1] = report.markdown(tbl)
    for _, line in ipairs(notes) do
      print(line)
      md[#md + 1] = ""
      md[#md + 1] = line
    end
    md[#md + 1] = ""
  end
  md[#md + 1] = "Command: `" .. command() .. "`"
  local md_path, json_path = o.md or (o.out .. "/" .. name .. ".md"), o.json or (o.out .. "/" .. name .. ".json")
  for _, path in ipairs({ md_path, json_path }) do fs.mkdir(path:match("^(.*)/[^/]*$") or ".") end
  fs.write(md_path, table.concat(md, "\n") .. "\n")
  files.write_json(json_path, { title = title, command = command(), budget = budget, cells = cells })
  print("\nwrote " .. md_path .. " and " .. json_path)
end

--- An error's message without the "file:line:" in front (for the command line).
function study.message(err)
  return (tostring(err):gsub("^[^:\n]+:%d+: ", ""))
end

-- Parse the flags, run, report: the body of every study script.
local function main(name, title, allowed, defaults, make_cells, columns)
  local o = cli.parse(arg, allowed, defaults)
  local ok, cells = pcall(function() return study.execute(o, study.sweep_opts(o, make_cells(o))) end)
  if not ok then cli.fail(study.message(cells)) end
  if cells then study.report(cells, o, name, title, columns) end
end

--- A table of the paper (II: concat, III: sum): spec = {name, fusion, title}.
function study.table(spec)
  local defaults = study.defaults(spec.name)
  defaults.methods = { "all" }
  main(spec.name, spec.title, with(study.FLAGS, "methods"), defaults, function(o)
    if #o.dataset ~= 1 then cli.fail("--dataset: a table is made on one data set") end
    local methods = o.methods[1] == "all" and sweep.METHODS or o.methods
    local cells = {}
    for i, m in ipairs(methods) do cells[i] = { method = m, dataset = o.dataset[1], fusion = spec.fusion } end
    return cells
  end, { progress = true })
end

--- An ablation of MILES: spec = {name, title, key, symbol, values, fixed,
-- best_epoch (show the best-epoch column)}.
function study.ablation(spec)
  local defaults = study.defaults(spec.name)
  defaults.fusion, defaults.values = { "concat", "sum" }, spec.values
  main(spec.name, spec.title, with(study.FLAGS, "fusion", "values"), defaults, function(o)
    if #o.dataset ~= 1 then cli.fail("--dataset: an ablation is made on one data set") end
    local cells = {}
    for _, f in ipairs(o.fusion) do
      for _, v in ipairs(o.values) do
        local opts = { [spec.key] = v }
        for k, x in pairs(spec.fixed or {}) do
          if k ~= spec.key then opts[k] = x end
        end
        cells[#cells + 1] = { method = "miles", dataset = o.dataset[1], fusion = f,
                              label = spec.key .. "=" .. tostring(v),
                              title = (spec.symbol or spec.key) .. " = " .. tostring(v),
                              fixed = { rule_opts = opts } }
      end
    end
    return cells
  end, { best_epoch = spec.best_epoch, progress = true })
end

return study
