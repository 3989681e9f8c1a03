--- miles.experiment: one training run from a plain configuration table, shared by
-- the demo, the paper's experiment scripts and the sweep runner.
--
--   local experiment = require "miles.experiment"
--   local ds = experiment.dataset("spoken_fashion")       -- or "toy", "smnist:/data/smnist", ...
--   local res = experiment.run{ dataset = "spoken_fashion", fusion = "concat",
--     rule = "miles", rule_opts = { tau = 0.2, mu = 0.5 }, lr = 1e-3, epochs = 10,
--     batch_size = 64, seed = 0, log_dir = "runs/miles" }
--   -- res.test = {fused, <modality>..., delta}, res.val, res.best_epoch, res.seconds,
--   -- res.config (the configuration with defaults filled in), res.history
--   local t = experiment.trainer{ dataset = "toy", rule = "miles" }  -- not yet trained:
--   t:epoch()                                                         -- for the REPL
--
-- Configuration keys (defaults in experiment.DEFAULTS):
--   dataset     a name (see experiment.dataset) or a miles.data.Dataset
--   fusion      "concat" | "sum" | a module or function (see miles.fusion)
--   rule        a built-in rule name (miles.rules) or a .lua file; rule_opts its options
--   arch        encoder: "auto" (the paper's per data set, small ResNets for the
--               embedded set, MLPs for flat arrays), "mlp", "resnet6|10|18|34"
--   widths      ResNet stage widths (default from the data set's entry)
--   hidden      the latent size of "mlp" encoders (default 32)
--   modalities  a list of modality names to train on (default: all; one name
--               gives a unimodal model: its encoder and one linear head)
--   lr, epochs, batch_size, seed, workers, log_dir, checkpoint, quiet, device,
--   cuda_graph, autocast (see miles.train)
-- A run with a checkpoint path resumes from it when the file exists.
local miles = require "miles"
local nn = miles.nn
local fusion = require "miles.fusion"
local train = require "miles.train"
local fs = require "miles.fs"

local experiment = {}

experiment.DEFAULTS = { fusion = "concat", rule = "vanilla", arch = "auto", lr = 1e-3, epochs = 10,
  batch_size = 64, seed = 0, workers = 2, quiet = true }

-- Per data set: the encoder of the paper (or ours for the embedded set).
local ARCH = {
  toy = { arch = "mlp" },
  spoken_fashion = { arch = "resnet10", widths = { 16, 32, 64, 128 }, stem = "small" },
  smnist = { arch = "resnet10", stem = "small" },
  luma = { arch = "resnet6", stem = "small" },
  cremad = { arch = "resnet18" },
}

--- The data set named by `spec`: "toy" (train.toy_dataset), "spoken_fashion" or
-- "spoken_fashion:<preset>", "<name>:<root folder>" for the paper's data sets
-- (cremad, smnist, luma, mmimdb; miles.data.<name>.load(root)), or a Lua file that
-- returns a Dataset (or a function returning one). Returns dataset, kind.
function experiment.dataset(spec)
  if type(spec) == "table" then return spec, spec.kind or "custom" end
  if type(spec) ~= "string" then error("experiment.dataset: give a name, got " .. tostring(spec), 2) end
  if spec == "toy" then return train.toy_dataset{ n = 1024, seed = 0 }, "toy" end
  local name, rest = spec:match("^([%w_]+):?(.*)$")
  if name == "spoken_fashion" then
    local preset = rest ~= "" and rest or "easy"
    return require("miles.data.spoken_fashion").load({ preset = preset }), "spoken_fashion"
  end
  if name and ARCH[name] or name == "mmimdb" then
    if rest == "" then error(("experiment.dataset: give the folder: %s:/path/to/%s"):format(name, name), 2) end
    return require("miles.data." .. name).load(rest), name
  end
  if spec:find("%.lua$") then
    local v = dofile(spec)
    if type(v) == "function" then v = v() end
    return v, "file"
  end
  error("experiment.dataset: unknown data set '" .. spec ..
    "' (toy, spoken_fashion[:easy|hard], cremad:DIR, smnist:DIR, luma:DIR, mmimdb:DIR, or a .lua file)", 2)
end

--- The number of classes of a data set (its names, or the label width / largest label).
function experiment.classes(ds)
  if ds.classes then return #ds.classes end
  local y = ds.labels
  if y:dim() == 2 then return y:shape()[2] end
  return math.tointeger(miles.no_grad(function() return y:max():item() end))
end

--- The modality names of a data set, sorted.
function experiment.modalities(ds)
  local names = {}
  for k in pairs(ds.modalities) do names[#names + 1] = k end
  table.sort(names)
  return names
end

--- ds restricted to the modalities in `names` (same labels, splits and classes).
function experiment.select(ds, names)
  local mods = {}
  for _, n in ipairs(names) do
    if not ds.modalities[n] then
      error(("experiment: no modality '%s' (the data set has %s)"):format(tostring(n),
        table.concat(experiment.modalities(ds), ", ")), 2)
    end
    mods[n] = ds.modalities[n]
  end
  return miles.data.Dataset{ modalities = mods, labels = ds.labels, splits = ds.splits, classes = ds.classes }
end

--- An encoder for modality `name` of `ds` under cfg (arch, widths).
function experiment.encoder(ds, kind, name, cfg)
  local shape = ds.modalities[name]:shape()
  local entry = ARCH[kind] or {}
  local arch = cfg.arch
  if arch == "auto" then arch = (#shape == 4 and entry.arch) or (#shape == 4 and "resnet10") or "mlp" end
  if arch == "mlp" then
    local d = 1
    for i = 2, #shape do d = d * shape[i] end
    return nn.Sequential(nn.Flatten(), nn.Linear(d, cfg.hidden or 32), nn.ReLU())
  end
  local build = miles.models[arch]
  if type(build) ~= "function" or #shape ~= 4 then
    error(("experiment: arch '%s' does not fit modality '%s' of shape [%s]"):format(arch, name,
      table.concat(shape, ",")), 2)
  end
  return build({ in_channels = shape[2], widths = cfg.widths or entry.widths, stem = cfg.stem or entry.stem })
end

--- The fusion model for ds under cfg (fusion, arch, widths).
function experiment.model(ds, kind, cfg)
  local names = experiment.modalities(ds)
  local enc = {}
  for _, n in ipairs(names) do enc[n] = experiment.encoder(ds, kind, n, cfg) end
  return fusion.Model{ encoders = enc, order = names, classes = experiment.classes(ds), fusion = cfg.fusion }
end

--- Loader normalisation: uint8 modalities scaled to [0, 1].
function experiment.normalize(ds)
  local norm = {}
  for n, t in pairs(ds.modalities) do
    if t:dtype() == "uint8" then norm[n] = { scale = 1 / 255 } end
  end
  return norm
end

--- cfg with the defaults filled in (a new table).
function experiment.config(cfg)
  local c = {}
  for k, v in pairs(experiment.DEFAULTS) do c[k] = v end
  for k, v in pairs(cfg or {}) do c[k] = v end
  if c.dataset == nil then error("experiment: the configuration needs a dataset", 3) end
  return c
end

--- A trainer for one configuration, ready for t:epoch() or t:fit() (resumed from
-- cfg.checkpoint when that file exists); the model is built after seeding with
-- cfg.seed. `ds` (optional) is the already loaded data set of cfg.dataset.
-- Returns the trainer and the configuration with defaults filled in.
function experiment.trainer(cfg, ds, kind)
  cfg = experiment.config(cfg)
  if not ds then ds, kind = experiment.dataset(cfg.dataset) end
  if cfg.modalities then ds = experiment.select(ds, cfg.modalities) end
  miles.manual_seed(cfg.seed)
  local args = { model = experiment.model(ds, kind, cfg), dataset = ds, rule = cfg.rule,
    rule_opts = cfg.rule_opts, lr = cfg.lr, epochs = cfg.epochs, batch_size = cfg.batch_size,
    seed = cfg.seed, workers = cfg.workers, loader_opts = { normalize = experiment.normalize(ds) },
    log_dir = cfg.log_dir, checkpoint = cfg.checkpoint, quiet = cfg.quiet, device = cfg.device,
    cuda_graph = cfg.cuda_graph, autocast = cfg.autocast }
  if cfg.checkpoint and fs.exists(cfg.checkpoint) then return train.resume(cfg.checkpoint, args), cfg end
  return train.Trainer(args), cfg
end

--- Train one configuration; returns the trainer's summary plus seconds, config and
-- history, and the trainer. `ds` (optional) is the already loaded data set of cfg.dataset.
function experiment.run(cfg, ds, kind)
  local t0 = miles.wall_time()
  local t
  t, cfg = experiment.trainer(cfg, ds, kind)
  local s = t:fit()
  s.seconds = miles.wall_time() - t0
  s.config = cfg
  s.history = t.history
  return s, t
end

return experiment
