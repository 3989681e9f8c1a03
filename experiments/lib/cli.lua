--- experiments/lib/cli.lua: command-line flags of the experiment scripts (one
-- table of every flag with its kind and help, so the scripts agree on them).
--
--   local cli = require "lib.cli"
--   local o = cli.parse(arg, { "dataset", "epochs", "out" }, { dataset = "toy", epochs = 5 })
--   -- o.dataset, o.epochs, o.out; positional words in o[1], o[2], ...
--   -- "--batch-size 32" and "--batch-size=32" both give o.batch_size = 32
-- --help prints the script's header comment and its flags, then exits; a bad
-- flag or value prints the error and exits with status 2.
local cli = {}

--- name = {kind, help}; kinds: string, int, number, list (comma-separated
-- words), ints, values (comma-separated numbers, true/false or words), bool (no
-- value).
cli.FLAGS = {
  dataset = { "list", "data set(s): toy, spoken_fashion[:easy|hard], cremad:DIR, smnist:DIR, luma:DIR, mmimdb:DIR" },
  methods = { "list", "methods (rules), comma-separated; 'all' = the paper's nine" },
  fusion = { "list", "fusion(s): concat, sum or concat,sum" },
  trials = { "int", "configurations per method (budget): 1 = the defaults, N > 1 = random search" },
  epochs = { "int", "training epochs per trial" },
  seeds = { "ints", "seeds; every configuration runs once per seed (mean ± std over them)" },
  workers = { "int", "parallel trial processes (default: the number of cores)" },
  threads = { "int", "CPU threads per trial process (default: cores / workers)" },
  batch_size = { "int", "batch size" },
  device = { "string", "where each trial trains: cpu (default), cuda or cuda:N" },
  autocast = { "bool", "train under bf16 autocast (miles.autocast; float32 weights)" },
  lr = { "number", "fix the learning rate (no lr search)" },
  sample_seed = { "int", "seed of the configuration sampler" },
  values = { "values", "the values of the ablated option" },
  out = { "string", "the sweep folder (trials, resumable)" },
  md = { "string", "Markdown table file (default <out>/<name>.md)" },
  json = { "string", "JSON file of all numbers (default <out>/<name>.json)" },
  gather = { "bool", "only report the results already in --out (run nothing)" },
  slurm = { "bool", "write Slurm job arrays under <out>/slurm instead of running" },
  keep_checkpoints = { "bool", "keep each trial's checkpoint after it finished" },
  partition = { "string", "Slurm: partition" },
  time = { "string", "Slurm: time limit per trial (e.g. 04:00:00)" },
  cpus = { "int", "Slurm: CPUs per trial" },
  mem = { "string", "Slurm: memory per trial (e.g. 16G)" },
  gpus = { "int", "Slurm: GPUs per trial" },
  account = { "string", "Slurm: account" },
  array_max = { "int", "Slurm: most trials per job array (MaxArraySize), default 1000" },
  throttle = { "int", "Slurm: most array tasks running at once" },
  help = { "bool", "print this help" },
}

--- Print msg to stderr and exit with status 2.
function cli.fail(msg)
  io.stderr:write(msg, "\n")
  os.exit(2)
end

local function split(s)
  local out = {}
  for w in s:gmatch("[^,]+") do out[#out + 1] = w end
  return out
end

local CONVERT = {
  string = function(s) return s end,
  number = function(s) return tonumber(s) end,
  int = function(s) return math.tointeger(tonumber(s)) end,
  list = split,
  ints = function(s)
    local out = {}
    for i, w in ipairs(split(s)) do
      out[i] = math.tointeger(tonumber(w))
      if not out[i] then return nil end
    end
    return out
  end,
  values = function(s)
    local out = {}
    for i, w in ipairs(split(s)) do
      if w == "true" then out[i] = true elseif w == "false" then out[i] = false else out[i] = tonumber(w) or w end
    end
    return out
  end,
}

-- The header comment of a Lua file (its leading "--" lines, without the dashes).
local function header(path)
  local lines = {}
  for line in io.lines(path) do
    local text = line:match("^%-%-+ ?(.*)$")
    if not text then break end
    lines[#lines + 1] = text
  end
  return table.concat(lines, "\n")
end

--- The help text: the script's header, then its flags and defaults.
function cli.help(script, allowed, defaults)
  local lines = { header(script), "", "Flags:" }
  for _, name in ipairs(allowed) do
    local f = cli.FLAGS[name]
    local d = defaults[name]
    if type(d) == "table" then
      local parts = {}
      for i, v in ipairs(d) do parts[i] = tostring(v) end
      d = table.concat(parts, ",")
    end
    lines[#lines + 1] = ("  --%-16s %s%s"):format(name:gsub("_", "-") .. (f[1] == "bool" and "" or " X"), f[2],
      d ~= nil and (" [" .. tostring(d) .. "]") or "")
  end
  return table.concat(lines, "\n")
end

--- Parse argv (the script's `arg`) allowing the flags named in `allowed`
-- (plus --help), defaults filled in. See the top of the file.
function cli.parse(argv, allowed, defaults)
  defaults = defaults or {}
  local ok = { help = true }
  for _, n in ipairs(allowed) do
    if not cli.FLAGS[n] then error("cli.parse: no flag named " .. n, 2) end
    ok[n] = true
  end
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  local i = 1
  while i <= #argv do
    local a = argv[i]
    local name, value = a:match("^%-%-([%w-]+)=(.*)$")
    name = name or a:match("^%-%-([%w-]+)$")
    if not name then
      o[#o + 1] = a
    else
      local key = name:gsub("-", "_")
      local f = ok[key] and cli.FLAGS[key]
      if not f then cli.fail(("unknown flag --%s (see --help)"):format(name)) end
      if f[1] == "bool" then
        if value then cli.fail(("--%s takes no value"):format(name)) end
        o[key] = true
      else
        if not value then
          i = i + 1
          value = argv[i]
          if not value then cli.fail(("--%s needs a value"):format(name)) end
        end
        local v = CONVERT[f[1]](value)
        if v == nil then cli.fail(("--%s: expected %s, got '%s'"):format(name, f[1], value)) end
        o[key] = v
      end
    end
    i = i + 1
  end
  if o.help then
    print(cli.help(argv[0], allowed, defaults))
    os.exit(0)
  end
  return o
end

return cli
