-- The demo (`make demo`, README's first command): vanilla joint training and
-- MILES on the embedded spoken-fashion data set (Fashion-MNIST images paired
-- with spoken class names), each with concatenation and summation fusion, the
-- same seed and encoders (ResNet-10, widths 16..128) for all four runs. Prints
-- the test accuracy of the fused model and of each unimodal head at the best
-- validation epoch, in the layout of the paper's Table II, and writes under the
-- results folder:
--   <method>_<fusion>/log.csv, log.jsonl, summary.json   one folder per run
--   fig2_miles_concat.png    the paper's Fig. 2 for the MILES concat run
--   table.txt                the table as printed
--
--   build/bin/miles experiments/demo.lua [results_dir] [epochs] [preset]
--
-- Defaults: runs/demo, 6 epochs, preset "easy" (see miles.data.spoken_fashion;
-- the data set is built into the cache on first use, about a minute).
local miles = require "miles"
local experiment = require "miles.experiment"
local plot = require "miles.plot"

local root = arg[1] or "runs/demo"
local epochs = math.tointeger(tonumber(arg[2] or "6"))
if not epochs or epochs < 1 then error("demo: epochs must be a positive integer, got " .. tostring(arg[2]), 0) end
local preset = arg[3] or "easy"
local MILES = { tau = 0.2, mu = 0.5 }

local dataset = "spoken_fashion:" .. preset
local ds, kind = experiment.dataset(dataset)
local names = experiment.modalities(ds)
print(("spoken-fashion (%s): %d train / %d val / %d test pairs, modalities %s; %d epochs per run")
  :format(preset, #ds:split("train"), #ds:split("val"), #ds:split("test"), table.concat(names, ", "), epochs))

local RUNS = {
  { method = "vanilla", fusion = "concat" },
  { method = "miles", fusion = "concat" },
  { method = "vanilla", fusion = "sum" },
  { method = "miles", fusion = "sum" },
}
local t0 = miles.wall_time()
for _, r in ipairs(RUNS) do
  r.dir = ("%s/%s_%s"):format(root, r.method, r.fusion)
  r.summary, r.trainer = experiment.run({ dataset = dataset, fusion = r.fusion, rule = r.method,
    rule_opts = r.method == "miles" and MILES or nil, epochs = epochs, log_dir = r.dir, quiet = false },
    ds, kind)
  local s = r.summary
  print(("%-7s %-6s  %4.0f s  best epoch %d  fused val %.4f"):format(r.method, r.fusion, s.seconds,
    s.best_epoch, s.val.fused))
  if r.method == "miles" then
    for _, col in ipairs({ "u_", "lr_" }) do
      for _, n in ipairs(names) do
        print(("    %-12s %s"):format(col .. n, plot.sparkline(r.trainer, col .. n)))
      end
    end
  end
end

-- Table II's layout: A is the stronger head of vanilla concat, B the other;
-- Delta = A - B on the test set (negative when B overtakes A).
local base = RUNS[1].summary.test
local A, B = names[1], names[2]
if base[B] > base[A] then A, B = B, A end
local lines = {
  ("Test accuracy (%%) on spoken-fashion (%s), best validation epoch of %d; Delta = %s - %s")
    :format(preset, epochs, A, B),
  ("%-8s %-7s %7s %7s %7s %7s"):format("model", "fusion", "fused", A, B, "Delta"),
}
for _, r in ipairs(RUNS) do
  local t = r.summary.test
  lines[#lines + 1] = ("%-8s %-7s %7.1f %7.1f %7.1f %+7.1f"):format(r.method == "miles" and "+ MILES" or "Vanilla",
    r.fusion, 100 * t.fused, 100 * t[A], 100 * t[B], 100 * (t[A] - t[B]))
end
local table_text = table.concat(lines, "\n") .. "\n"
print("\n" .. table_text)
miles.write_file_atomic(root .. "/table.txt", table_text)

local fig = plot.fig2(RUNS[2].trainer, root .. "/fig2_miles_concat.png",
  { title = ("MILES (tau %g, mu %g), concat fusion, spoken-fashion (%s)"):format(MILES.tau, MILES.mu, preset) })
print(("%d runs in %.0f s. Logs: %s/<method>_<fusion>/ (log.csv, log.jsonl, summary.json)")
  :format(#RUNS, miles.wall_time() - t0, root))
print("Table: " .. root .. "/table.txt")
print("Fig. 2: " .. fig)
