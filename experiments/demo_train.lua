-- Trains vanilla and MILES (concat fusion) on one data set and prints, per
-- method, the test metric of the fused model, of each unimodal head, and the
-- gap between heads (Delta).
--
--   build/bin/miles experiments/demo_train.lua [dataset] [epochs] [log_root]
--
-- dataset: "toy" (the synthetic set of spec/train_spec.lua: train.toy_dataset),
-- "spoken_fashion" or "spoken_fashion:hard" (the embedded set; built into the
-- cache on first use), or a Lua file returning a miles.data.Dataset with two
-- modalities (or a function returning one). Default: spoken_fashion, falling back
-- to toy when it cannot be loaded (the output says so).
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local miles = require "miles"
local nn = miles.nn
local fusion = require "miles.fusion"
local train = require "miles.train"
local rules = require "miles.rules"

local which = arg and arg[1] or "spoken_fashion"
local epochs = tonumber(arg and arg[2])
local log_root = arg and arg[3]

local ds, kind, note
if which == "toy" then
  ds, kind = train.toy_dataset{ n = 1024, seed = 0 }, "toy"
elseif which:match("^spoken_fashion") then
  local preset = which:match(":(%w+)$") or "easy"
  local ok, res = pcall(function() return require("miles.data.spoken_fashion").load({ preset = preset }) end)
  if ok then
    ds, kind = res, "spoken_fashion"
  else
    note = "spoken-fashion could not be loaded (" .. tostring(res):gsub("\n.*", "") ..
      "); falling back to the synthetic data of spec/train_spec.lua"
    ds, kind = train.toy_dataset{ n = 1024, seed = 0 }, "toy"
  end
else
  local v = dofile(which)
  if type(v) == "function" then v = v() end
  ds, kind = v, "file"
end
if note then print("NOTE: " .. note) end

local names = {}
for k in pairs(ds.modalities) do names[#names + 1] = k end
table.sort(names)
assert(#names >= 2, "demo_train: the data set needs at least two modalities")

-- Classes: from the names, or the largest label.
local classes = ds.classes and #ds.classes or miles.no_grad(function() return ds.labels:max():item() end)
classes = math.tointeger(classes)

-- Encoders: MLPs on the toy set, small ResNet-10s on image-like arrays.
local function encoder(name)
  local t = ds.modalities[name]
  local shape = t:shape()
  if kind == "toy" or #shape ~= 4 then
    local d = 1
    for i = 2, #shape do d = d * shape[i] end
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 32), nn.ReLU())
  end
  return miles.models.resnet10({ in_channels = shape[2], widths = { 16, 32, 64, 128 }, stem = "small" })
end

local normalize = {}
for _, n in ipairs(names) do
  if ds.modalities[n]:dtype() == "uint8" then normalize[n] = { scale = 1 / 255 } end
end

local methods = {
  { "vanilla", function() return rules.vanilla() end },
  { "miles", function() return rules.miles{ tau = 0.2, mu = 0.5 } end },
}
epochs = epochs or (kind == "toy" and 10 or 5)
print(("data: %s (%s), %d samples, modalities %s, %d classes; %d epochs"):format(which, kind, #ds,
  table.concat(names, ", "), classes, epochs))

local results = {}
for _, m in ipairs(methods) do
  miles.manual_seed(0)
  local enc = {}
  for _, n in ipairs(names) do enc[n] = encoder(n) end
  local model = fusion.Model{ encoders = enc, order = names, classes = classes, fusion = "concat" }
  local t0 = miles.wall_time()
  local t = train.Trainer{ model = model, dataset = ds, rule = m[2](), lr = 1e-3, epochs = epochs,
    batch_size = 64, seed = 0, workers = 2, loader_opts = { normalize = normalize },
    log_dir = log_root and (log_root .. "/" .. m[1]) or nil }
  local s = t:fit()
  s.seconds = miles.wall_time() - t0
  results[#results + 1] = { m[1], s }
  io.write(("  %-8s done in %.1f s (best epoch %s)\n"):format(m[1], s.seconds, tostring(s.best_epoch)))
end

local head = ("%-8s %8s"):format("method", "fused")
for _, n in ipairs(names) do head = head .. ("%9s"):format(n:sub(1, 9)) end
print(("\ntest %s\n"):format(results[1][2].metric) .. head .. ("%8s"):format("Delta"))
for _, r in ipairs(results) do
  local s = r[2].test or r[2].val
  local line = ("%-8s %8.4f"):format(r[1], s.fused)
  for _, n in ipairs(names) do line = line .. ("%9.4f"):format(s[n]) end
  print(line .. ("%8.4f"):format(s.delta))
end
