--- miles.sweep.space: the hyper-parameter ranges of the random search (the one
-- table space.SPACE) and its deterministic sampler.
--
--   local space = require "miles.sweep.space"
--   space.sample("miles", "0|toy|concat|miles", 3)
--     --> {lr = 0.00231, rule_opts = {tau = 0.1, mu = 0.25}}
--   space.sample("miles", key, 1)  --> {lr = 1e-3, rule_opts = {}}   (the defaults)
--
-- As in the paper (Sec. IV-B, "Hyper-parameter tuning"), every method gets N
-- configurations per data set and fusion, drawn from the ranges below (the
-- authors' recommended ranges where they give them). Our choice: configuration 1
-- is always the defaults (lr space.DEFAULT_LR, every rule option at the rule's
-- default), so a budget of one trial runs the defaults; configurations 2..N are
-- sampled. Each value is drawn from its own stream, hash(key, index, name), so a
-- configuration does not change when N grows, when methods are added, or when
-- another option of the same method gets a range.
--
-- MSLR's per-modality rates (lrs = UNIMODAL): the MSLR paper's pre-step, a
-- unimodal learning-rate search. The sweep runs it as its own stage (the cell
-- "<dataset>/unimodal/search": the same N learning rates, each trial training
-- every encoder on its own head's loss only, rules miles.sweep.unimodal), and each
-- MSLR trial takes, per modality, the rate whose unimodal head reached the best
-- validation metric (mean over seeds). The trials of MSLR start when that stage is
-- over (locally; on Slurm their job array depends on the stage's).
local space = {}

local function log_uniform(lo, hi) return { kind = "log_uniform", lo, hi } end
local function uniform(lo, hi) return { kind = "uniform", lo, hi } end
local function int(lo, hi) return { kind = "int", lo, hi } end
local function one_of(...) return { kind = "one_of", ... } end

--- Marks the MSLR rates that come from the unimodal stage.
space.UNIMODAL = { kind = "unimodal" }

--- The global learning rate of configuration 1.
space.DEFAULT_LR = 1e-3

local LR = log_uniform(1e-4, 1e-2)

--- Per method: lr (the global rate) and the rule options that are searched.
-- Options not listed keep the rule's defaults (docs/BASELINES.md).
space.SPACE = {
  vanilla = { lr = LR },
  -- tau: Table IV's values plus 0.05 (Fig. 2); mu: Table V's values below 1.
  miles = { lr = LR, tau = one_of(0.0, 0.05, 0.1, 0.2, 0.3, 0.5), mu = one_of(0.1, 0.25, 0.5, 0.75) },
  -- OGM's alpha: 0.1 to 0.8 in Peng et al.'s experiments.
  ogm = { lr = LR, alpha = uniform(0.1, 0.8) },
  ogm_ge = { lr = LR, alpha = uniform(0.1, 0.8) },
  -- MSES: patience around its default 5.
  mses = { lr = LR, patience = int(3, 10) },
  -- MSLR: per-modality rates from the unimodal stage; S: lambda in [0.3, 0.7].
  mslr_k = { lr = LR, lrs = space.UNIMODAL },
  mslr_s = { lr = LR, lrs = space.UNIMODAL, lambda = uniform(0.3, 0.7) },
  mslr_d = { lr = LR, lrs = space.UNIMODAL },
  -- G-Blend: the learning rate only (its estimate settings keep their defaults).
  gblend = { lr = LR },
  -- The MSLR pre-step (the unimodal stage): the learning rate only.
  unimodal = { lr = LR },
}

-- 64-bit FNV-1a hash of a string (Lua integers wrap around).
local function fnv1a(s)
  local h = 0xcbf29ce484222325
  for i = 1, #s do
    h = (h ~ s:byte(i)) * 0x100000001b3
  end
  return h
end

--- SplitMix64's output for state x (the value its generator returns after
-- adding the golden-ratio increment to x).
function space.splitmix64(x)
  local z = x + 0x9e3779b97f4a7c15
  z = (z ~ (z >> 30)) * 0xbf58476d1ce4e5b9
  z = (z ~ (z >> 27)) * 0x94d049bb133111eb
  return z ~ (z >> 31)
end

--- A uniform number in [0, 1) for the string s (the same s, the same number).
function space.uniform01(s)
  return (space.splitmix64(fnv1a(s)) >> 11) * 2.0 ^ -53
end

-- Three significant digits: readable configurations, no loss for a search.
local function round3(x) return tonumber(("%.3g"):format(x)) end

-- The value of range r for the uniform number u.
local function draw(r, u)
  if r.kind == "log_uniform" then return round3(math.exp(math.log(r[1]) + u * (math.log(r[2]) - math.log(r[1])))) end
  if r.kind == "uniform" then return round3(r[1] + u * (r[2] - r[1])) end
  if r.kind == "int" then return r[1] + math.floor(u * (r[2] - r[1] + 1)) end
  if r.kind == "one_of" then return r[1 + math.floor(u * #r)] end
  error("space: unknown range kind " .. tostring(r.kind), 3)
end

--- The space of `method` (an error naming it when it has none).
function space.of(method)
  local s = space.SPACE[method]
  if not s then
    local names = {}
    for k in pairs(space.SPACE) do names[#names + 1] = k end
    table.sort(names)
    error(("sweep: no search space for method '%s' (known: %s)"):format(tostring(method),
      table.concat(names, ", ")), 3)
  end
  return s
end

--- Does `method` take its per-modality rates from the unimodal stage?
function space.needs_unimodal(method)
  return space.of(method).lrs == space.UNIMODAL
end

--- Configuration `index` (1-based) of `method` for the stream `key` (a string
-- naming sample seed, data set, fusion and method). Index 1: the defaults; others:
-- sampled. `fixed` = {lr = x, rule_opts = {...}} overrides what it names.
-- Returns {lr = number, rule_opts = table} (lrs = UNIMODAL is left out: the
-- trial fills it in).
function space.sample(method, key, index, fixed)
  if math.type(index) ~= "integer" or index < 1 then
    error("space.sample: index must be an integer >= 1, got " .. tostring(index), 2)
  end
  local s = space.of(method)
  local cfg = { lr = space.DEFAULT_LR, rule_opts = {} }
  if index > 1 then
    local names = {}
    for name in pairs(s) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      local r = s[name]
      if r ~= space.UNIMODAL then
        local v = draw(r, space.uniform01(("%s|%d|%s"):format(key, index, name)))
        if name == "lr" then cfg.lr = v else cfg.rule_opts[name] = v end
      end
    end
  end
  fixed = fixed or {}
  if fixed.lr then cfg.lr = fixed.lr end
  for k, v in pairs(fixed.rule_opts or {}) do cfg.rule_opts[k] = v end
  return cfg
end

--- The ranges as text lines, for `experiments/sweep.lua space`.
function space.describe()
  local function show(r)
    if r == space.UNIMODAL then return "per modality, from the unimodal stage" end
    if r.kind == "one_of" then
      local v = {}
      for i, x in ipairs(r) do v[i] = tostring(x) end
      return "one of {" .. table.concat(v, ", ") .. "}"
    end
    return ("%s [%g, %g]"):format(r.kind:gsub("_", "-"), r[1], r[2])
  end
  local methods = {}
  for m in pairs(space.SPACE) do methods[#methods + 1] = m end
  table.sort(methods)
  local lines = { ("configuration 1: lr %g, rule defaults; 2..N sampled:"):format(space.DEFAULT_LR) }
  for _, m in ipairs(methods) do
    local names = {}
    for n in pairs(space.SPACE[m]) do names[#names + 1] = n end
    table.sort(names)
    local parts = {}
    for i, n in ipairs(names) do parts[i] = n .. " " .. show(space.SPACE[m][n]) end
    lines[#lines + 1] = ("  %-9s %s"):format(m, table.concat(parts, "; "))
  end
  return lines
end

return space
