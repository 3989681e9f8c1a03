-- `make bench`: training throughput of the reference workloads (the shapes of
-- bench/torch_twin.py and ../shared/bench/torch_ref.py: two ResNet encoders,
-- concat fusion, three cross-entropy losses, Adam over three parameter groups,
-- batch 64), then forward+backward time per layer type. When /usr/bin/python3
-- has torch, the PyTorch twin runs after each workload and the ratio is printed.
--   build/bin/miles experiments/bench.lua [workload ...] [--threads N] [--seconds S]
local miles = require "miles"
local nn, F = miles.nn, miles.F
local models = require "miles.models"
local optim = require "miles.optim"

local WORKLOADS = { -- shape A, shape B, model, classes
  smnist = { { 1, 28, 28 }, { 1, 28, 28 }, "resnet10", 10 },
  luma = { { 1, 96, 96 }, { 3, 96, 96 }, "resnet6", 50 },
  cremad = { { 1, 224, 224 }, { 3, 224, 224 }, "resnet18", 6 },
}
local BATCH, WARMUP, MIN_STEPS = 64, 3, 3

local function parse_args(argv)
  local o = { names = {}, threads = 2, seconds = 10 }
  local i = 1
  while i <= #argv do
    if argv[i] == "--threads" then
      o.threads, i = tonumber(argv[i + 1]), i + 1
    elseif argv[i] == "--seconds" then
      o.seconds, i = tonumber(argv[i + 1]), i + 1
    else
      o.names[#o.names + 1] = argv[i]
    end
    i = i + 1
  end
  if #o.names == 0 then o.names = { "smnist", "luma" } end
  return o
end


--- Peak resident memory of this process in MiB (VmHWM).
local function peak_rss_mib()
  local f = io.open("/proc/self/status")
  if not f then return 0 end
  local text = f:read("a")
  f:close()
  return (tonumber(text:match("VmHWM:%s*(%d+)")) or 0) / 1024
end

--- The two encoders, the three heads and an Adam with three groups.
local function build(spec)
  local sa, sb, arch, ncls = table.unpack(spec)
  local ea = models[arch]({ in_channels = sa[1] })
  local eb = models[arch]({ in_channels = sb[1] })
  local ha, hb = nn.Linear(ea.out_features, ncls), nn.Linear(eb.out_features, ncls)
  local hab = nn.Linear(ea.out_features + eb.out_features, ncls)
  local heads = {}
  for _, m in ipairs({ ha, hb, hab }) do
    for _, p in ipairs(m:parameters()) do heads[#heads + 1] = p end
  end
  local opt = optim.Adam({
    { name = "a", params = ea:parameters() },
    { name = "b", params = eb:parameters() },
    { name = "fusion", params = heads },
  }, { lr = 1e-3 })
  return ea, eb, ha, hb, hab, opt
end

local function run_workload(name, o)
  local spec = WORKLOADS[name]
  miles.manual_seed(0)
  local ea, eb, ha, hb, hab, opt = build(spec)
  local a = miles.randn(BATCH, table.unpack(spec[1]))
  local b = miles.randn(BATCH, table.unpack(spec[2]))
  local y = miles.randint(1, spec[4] + 1, { BATCH })
  local function step()
    opt:zero_grad()
    local za, zb = ea(a), eb(b)
    local loss = F.cross_entropy(hab(miles.cat({ za, zb }, 2)), y) + F.cross_entropy(ha(za), y)
      + F.cross_entropy(hb(zb), y)
    loss:backward()
    opt:step()
  end
  for _ = 1, WARMUP do step() end
  local n, t0 = 0, miles.wall_time()
  while miles.wall_time() - t0 < o.seconds or n < MIN_STEPS do
    step()
    n = n + 1
  end
  local dt = miles.wall_time() - t0
  local rate = n * BATCH / dt
  print(string.format("%s: %.1f samples/s (%.1f ms/step, peak RSS %.0f MiB)", name, rate,
    dt / n * 1000, peak_rss_mib()))
  return rate
end

--- Ask the PyTorch twin (a separate process) for the same workload.
local function torch_rate(name, o)
  local cmd = string.format("/usr/bin/python3 bench/torch_twin.py %s %d 2>/dev/null", name, o.threads)
  local p = io.popen(cmd)
  if not p then return nil end
  local line = p:read("l")
  p:close()
  if not line then return nil end
  print("torch " .. line)
  return tonumber(line:match(":%s*([%d%.]+) samples/s"))
end

--- Forward + backward time of one layer of each type, at smnist/luma sizes.
local function layer_times(o)
  local function time_it(label, f, ...)
    for _ = 1, 2 do f(...) end
    local n, t0 = 0, miles.wall_time()
    while miles.wall_time() - t0 < math.min(o.seconds, 2) do
      f(...)
      n = n + 1
    end
    print(string.format("  %-44s %8.3f ms", label, (miles.wall_time() - t0) / n * 1000))
  end
  local function fb(m, x)
    local y = m(x)
    y:sum():backward()
  end
  print("forward+backward per layer (batch 64):")
  local x = miles.randn(64, 64, 14, 14, { requires_grad = true })
  time_it("conv 3x3 64->64 on 14x14", fb, nn.Conv2d(64, 64, 3, { padding = 1, bias = false }), x)
  time_it("batch norm 64 on 14x14", fb, nn.BatchNorm2d(64), x)
  time_it("relu on 64x14x14", fb, nn.ReLU(), x)
  time_it("max pool 3x3/2 on 64x14x14", fb, nn.MaxPool2d(3, { stride = 2, padding = 1 }), x)
  local s = miles.randn(64, 1, 96, 96, { requires_grad = true })
  time_it("conv 7x7/2 1->64 on 96x96 (stem)", fb, nn.Conv2d(1, 64, 7, { stride = 2, padding = 3, bias = false }), s)
  local z = miles.randn(64, 512, { requires_grad = true })
  time_it("linear 512->10", fb, nn.Linear(512, 10), z)
end

local o = parse_args(arg or {})
miles.set_num_threads(o.threads)
print(string.format("miles %s, %d threads, batch %d, >= %g s per workload", miles.version,
  o.threads, BATCH, o.seconds))
for _, name in ipairs(o.names) do
  assert(WORKLOADS[name], "unknown workload " .. name .. " (smnist, luma, cremad)")
  local ours = run_workload(name, o)
  local theirs = torch_rate(name, o)
  if theirs then
    print(string.format("%s: ours/PyTorch = %.2fx", name, ours / theirs))
  else
    print(name .. ": PyTorch not available (install python3-torch for the ratio)")
  end
end
layer_times(o)
