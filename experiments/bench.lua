-- `make bench`: training throughput of the reference workloads (the shapes of
-- bench/torch_twin.py and ../shared/bench/torch_ref.py: two ResNet encoders,
-- concat fusion, three cross-entropy losses, Adam over three parameter groups,
-- batch 64), then forward+backward time per layer type. When /usr/bin/python3
-- has torch, the PyTorch twin runs in turn with ours, round after round, and the
-- median of the per-round ratios is printed (a shared machine drifts; pairs of
-- neighbouring runs compare fairly).
--   build/bin/miles experiments/bench.lua [workload ...] [--threads N]
--                                         [--seconds S] [--rounds R] [--cuda]
--                                         [--batch B]
-- --batch B (default 64) times a smaller batch, for a quick check of the code
-- paths (the emulated GPU runs it); PyTorch is then left out (its twin times 64).
-- --cuda runs ours on the GPU twice each round, in float32 (TF32 on) and with bf16
-- autocast (miles.autocast; a second model built the same way), beside
-- PyTorch eager and PyTorch with bf16 autocast + channels_last on the same GPU:
-- ours-float32 / PyTorch eager and ours-bf16 / PyTorch AMP are the two ratios.
-- On the GPU two more runs of ours replay the whole training step as one CUDA
-- graph (miles.cuda.graph), in float32 (compared with PyTorch eager) and captured
-- under bf16 autocast (compared with PyTorch AMP): small models are bound by kernel
-- launches, and a graph launches once per step.
-- After each workload, the time split of one float32 (and on a GPU one bf16) step
-- of ours by layer type
-- (miles.profile: module classes forward, autograd ops backward, the losses and
-- the optimizer step; each piece waited for, so the step runs slower than above).
-- The PyTorch interpreter is $MILES_PYTHON, else /usr/bin/python3 when present,
-- else python3.
local miles = require "miles"
local nn, F = miles.nn, miles.F
local models = require "miles.models"
local optim = require "miles.optim"
local profile = require "miles.profile"
local core = require "miles.core"

local WORKLOADS = { -- shape A, shape B, model, classes
  smnist = { { 1, 28, 28 }, { 1, 28, 28 }, "resnet10", 10 },
  luma = { { 1, 96, 96 }, { 3, 96, 96 }, "resnet6", 50 },
  cremad = { { 1, 224, 224 }, { 3, 224, 224 }, "resnet18", 6 },
}
local REFERENCE_BATCH, WARMUP, MIN_STEPS = 64, 3, 3
local BATCH = REFERENCE_BATCH -- (--batch sets it)

local function parse_args(argv)
  local o = { names = {}, threads = 2, seconds = 6, rounds = 3, device = "cpu" }
  local i = 1
  while i <= #argv do
    if argv[i] == "--threads" then
      o.threads, i = tonumber(argv[i + 1]), i + 1
    elseif argv[i] == "--seconds" then
      o.seconds, i = tonumber(argv[i + 1]), i + 1
    elseif argv[i] == "--rounds" then
      o.rounds, i = tonumber(argv[i + 1]), i + 1
    elseif argv[i] == "--cuda" then
      o.device = "cuda"
    elseif argv[i] == "--batch" then
      BATCH, i = math.tointeger(tonumber(argv[i + 1])), i + 1
      assert(BATCH and BATCH > 0, "bench: --batch wants a positive integer")
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

--- Wait for the GPU's queued work (nothing to wait for on the cpu).
local function sync(device)
  if device ~= "cpu" then miles.cuda.synchronize() end
end

--- The two encoders, the three heads (all on `device`) and an Adam with three groups.
local function build(spec, device)
  local sa, sb, arch, ncls = table.unpack(spec)
  local ea = models[arch]({ in_channels = sa[1] })
  local eb = models[arch]({ in_channels = sb[1] })
  local ha, hb = nn.Linear(ea.out_features, ncls), nn.Linear(eb.out_features, ncls)
  local hab = nn.Linear(ea.out_features + eb.out_features, ncls)
  for _, m in ipairs({ ea, eb, ha, hb, hab }) do m:to(device) end
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

--- Multiply-add FLOPs of one training step (forward x 3: the backward costs about
-- twice the forward), counted by watching the convolutions and linear layers of
-- one forward pass (F.conv2d and F.linear wrapped for its duration).
local function step_flops(forward)
  local conv, linear, flops = F.conv2d, F.linear, 0
  F.conv2d = function(x, w, ...)
    local y = conv(x, w, ...)
    local ws, ys = w:shape(), y:shape()
    flops = flops + 2 * ys[1] * ys[2] * ys[3] * ys[4] * ws[2] * ws[3] * ws[4]
    return y
  end
  F.linear = function(x, w, ...)
    local y = linear(x, w, ...)
    flops = flops + 2 * (y:numel() // w:shape()[1]) * w:shape()[1] * w:shape()[2]
    return y
  end
  local ok, err = pcall(miles.no_grad, forward)
  F.conv2d, F.linear = conv, linear
  assert(ok, err)
  return 3 * flops
end

-- Dense peak TFLOP/s of the GPUs we expect (float32 through TF32 tensor cores, and
-- bf16), from NVIDIA's data sheets (SXM parts); nil for others.
local PEAK_TFLOPS = {
  { "H100", tf32 = 494.7, bf16 = 989.4 },
  { "H200", tf32 = 494.7, bf16 = 989.4 },
}


--- A timed training loop for one workload: steps/s over at least o.seconds, with
-- bf16 autocast on when `bf16` (warm-up included, so its plans are made there),
-- the step replayed as a CUDA graph when `graph`; and a function giving the time
-- split of one (eager) step.
local function make_runner(name, device, bf16, graph)
  local spec = WORKLOADS[name]
  miles.manual_seed(0)
  local ea, eb, ha, hb, hab, opt = build(spec, device)
  local a = miles.randn(BATCH, table.unpack(spec[1])):to(device)
  local b = miles.randn(BATCH, table.unpack(spec[2])):to(device)
  local y = miles.randint(1, spec[4] + 1, { BATCH }):to(device)
  local function step()
    opt:zero_grad()
    local za, zb = ea(a), eb(b)
    local loss = profile.section("fusion and losses", function()
      return F.cross_entropy(hab(miles.cat({ za, zb }, 2)), y) + F.cross_entropy(ha(za), y)
        + F.cross_entropy(hb(zb), y)
    end)
    loss:backward()
    profile.section("optimizer step", function() opt:step() end)
  end
  local function split(wait)
    return miles.autocast(bf16, function()
      return miles.profile(step, { device = device, wait = wait })
    end)
  end
  local flops = step_flops(function() return hab(miles.cat({ ea(a), eb(b) }, 2)) end)
  miles.autocast(bf16, function()
    for _ = 1, WARMUP do step() end
    sync(device)
  end)
  local replay = step
  if graph then
    -- the same step, captured (with autocast's setting, which its replays keep);
    -- the inputs stay
    local g = miles.autocast(bf16, miles.cuda.graph, step)
    replay = function() g:replay() end
  end
  -- (on a GPU also what the steps did beyond their work: device allocations and
  -- host waits, less the loop's own synchronisations; the issue wants 0 of each)
  return function(seconds)
    return miles.autocast(bf16, function()
      -- one untimed step first: the other runners, run between, leave the caches
      -- in another state (a graph's pool holds blocks), so the next step settles
      replay()
      sync(device)
      local n, syncs, t0 = 0, 0, miles.wall_time()
      local allocs0, waits0 = miles.cuda.memory_stats().allocations, miles.cuda.host_waits()
      local cycles0, gc0 = core.collector_stats()
      local host = 0 -- seconds the host spent queuing the steps
      while miles.wall_time() - t0 < seconds or n < MIN_STEPS do
        local h0 = miles.wall_time()
        replay()
        host = host + miles.wall_time() - h0
        n = n + 1
        if n % 10 == 0 then -- as PyTorch's twin: a short queue
          sync(device)
          syncs = syncs + 1
        end
      end
      sync(device)
      local dt = miles.wall_time() - t0
      local steady = { steps = n, allocs = miles.cuda.memory_stats().allocations - allocs0,
                       waits = miles.cuda.host_waits() - waits0 - (device == "cpu" and 0 or syncs + 1) }
      local cycles1, gc1 = core.collector_stats()
      steady.cycles, steady.gc_ms = cycles1 - cycles0, (gc1 - gc0) * 1000
      steady.host_ms = host / n * 1000
      return n * BATCH / dt, dt / n * 1000, flops * n / dt / 1e12, steady
    end)
  end, split
end

local function python()
  local env = os.getenv("MILES_PYTHON")
  if env then return env end
  local f = io.open("/usr/bin/python3")
  if f then f:close() return "/usr/bin/python3" end
  return "python3"
end

--- Ask the PyTorch twin (a separate process) for the same workload; flags such
-- as "--cuda --amp --channels-last" pass through.
local function torch_rate(name, o, flags)
  local cmd = string.format("%s bench/torch_twin.py %s %d %g %s 2>/dev/null", python(), name,
    o.threads, o.seconds, flags or "")
  local p = io.popen(cmd)
  if not p then return nil end
  local line = p:read("l")
  p:close()
  return line and tonumber(line:match(":%s*([%d%.]+) samples/s")), line
end

local function median(xs)
  local s = {}
  for i, v in ipairs(xs) do s[i] = v end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
end

-- Our runs: float32, and on a GPU also bf16 autocast; `label` names each in the
-- output ("ours" alone on the cpu, as before there was a second).
local function our_runs(o)
  if o.device == "cpu" then return { { key = "float32", label = "ours", bf16 = false } } end
  return { { key = "float32", label = "ours float32", bf16 = false },
           { key = "bf16", label = "ours bf16", bf16 = true },
           { key = "graph", label = "ours float32 CUDA graph", bf16 = false, graph = true },
           { key = "bf16graph", label = "ours bf16 CUDA graph", bf16 = true, graph = true } }
end

-- The PyTorch runs each round is compared with, and which of ours each is
-- compared with: its eager float32 twin (ours float32; on a GPU also ours as a
-- CUDA graph), and on a GPU bf16 autocast + channels_last (ours bf16, eager and as
-- a CUDA graph).
local function peers(o)
  if BATCH ~= REFERENCE_BATCH then return {} end -- (PyTorch's twin times the reference batch)
  if o.device == "cpu" then return { { label = "PyTorch", flags = "", ours = { "float32" } } } end
  return { { label = "PyTorch eager", flags = "--cuda", ours = { "float32", "graph" } },
           { label = "PyTorch AMP bf16 + channels_last", flags = "--cuda --amp --channels-last",
             ours = { "bf16", "bf16graph" } } }
end

-- " = N% of the GPU's dense TF32 (or bf16) peak" when the GPU is one of PEAK_TFLOPS.
local function peak_note(o, tflops, bf16)
  if o.device == "cpu" then return "" end
  local gpu = o.gpu_name or ""
  local kind = bf16 and "bf16" or "tf32"
  for _, p in ipairs(PEAK_TFLOPS) do
    if gpu:find(p[1], 1, true) then
      return string.format(" = %.1f%% of the %s's dense %s peak (%.0f)", 100 * tflops / p[kind],
        p[1], bf16 and "bf16" or "TF32", p[kind])
    end
  end
  return ""
end

local function run_workload(name, o)
  local mine, list = our_runs(o), peers(o)
  local label_of = {}
  for _, m in ipairs(mine) do
    m.run, m.split = make_runner(name, o.device, m.bf16, m.graph)
    m.rates = {}
    label_of[m.key] = m.label
  end
  local ratios = {} -- ratios[i][key]: ours `key` / peer i, one per round
  for i, p in ipairs(list) do
    ratios[i] = {}
    for _, key in ipairs(p.ours) do ratios[i][key] = {} end
  end
  for r = 1, o.rounds do
    local rate, parts = {}, {}
    for _, m in ipairs(mine) do
      local ms
      rate[m.key], ms, m.achieved, m.steady = m.run(o.seconds)
      m.rates[r] = rate[m.key]
      parts[#parts + 1] = string.format("%s %.1f samples/s (%.1f ms/step)", m.label, rate[m.key], ms)
    end
    for i, p in ipairs(list) do
      local theirs, line = torch_rate(name, o, p.flags)
      if theirs then
        for _, key in ipairs(p.ours) do
          local rs = ratios[i][key]
          rs[#rs + 1] = rate[key] / theirs
        end
        parts[#parts + 1] = string.format("%s %s", p.label, line:match(":%s*(.*)$"))
      end
    end
    print(string.format("  round %d: %s", r, table.concat(parts, ", ")))
  end
  for _, m in ipairs(mine) do
    local what = o.device == "cpu" and "" or " (" .. m.label .. ")"
    print(string.format("%s on %s%s: %.1f samples/s (median of %d rounds, peak RSS %.0f MiB), %.2f TFLOP/s%s",
      name, o.device, what, median(m.rates), o.rounds, peak_rss_mib(), m.achieved,
      peak_note(o, m.achieved, m.bf16)))
    local gpu_part = o.device == "cpu" and "" or string.format(
      "%d device allocations, %d host waits, %.1f ms/step queuing on the host, ", m.steady.allocs,
      m.steady.waits, m.steady.host_ms)
    print(string.format("  last round's %d steps: %s%d collector cycles (%.1f ms)", m.steady.steps,
      gpu_part, m.steady.cycles, m.steady.gc_ms))
  end
  -- the eager runners' splits (float32, and on a GPU bf16 autocast too)
  for _, m in ipairs(mine) do
    if not m.graph then
      print(string.format("%s: time split of one step of ours (%s), each piece waited for:", name,
        m.label))
      print(miles.profile_format(m.split()))
      if o.device ~= "cpu" then
        print(string.format("%s: the same step's host time alone (nothing waited for):", name))
        print(miles.profile_format(m.split(false)))
      end
    end
  end
  for i, p in ipairs(list) do
    for _, key in ipairs(p.ours) do
      local rs = ratios[i][key]
      if #rs > 0 then
        print(string.format("%s: %s/%s = %.2fx (median of %d paired rounds)", name, label_of[key],
          p.label, median(rs), #rs))
      else
        print(name .. ": " .. p.label .. " not available (install python3-torch for the ratio)")
        break
      end
    end
  end
end

-- A ResNet block's end as the models run it: batch norm with the residual sum
-- and the ReLU in its pass (a fixed channels-last residual of the input's shape).
local BlockEnd = nn.Module:extend("BlockEnd")
function BlockEnd:init(shape)
  self.bn = nn.BatchNorm2d(shape[2])
  local r = miles.randn(table.unpack(shape))
  self:register_buffer("residual", r:permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3))
end
function BlockEnd:forward(x) return self.bn(x, { residual = self.residual, relu = true }) end

--- Forward and forward+backward time of one layer of each type at smnist/luma
-- sizes, on channels-last float32 activations (the layout the network runs in),
-- with a fixed output gradient.
local function layer_times(o)
  local function time_it(f)
    for _ = 1, 2 do f() end
    sync(o.device)
    local n, t0 = 0, miles.wall_time()
    while n == 0 or miles.wall_time() - t0 < math.min(o.seconds, 1) do
      f()
      n = n + 1
    end
    sync(o.device)
    return (miles.wall_time() - t0) / n * 1000
  end
  local function channels_last(t)
    if t:dim() ~= 4 then return t end
    return t:permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3)
  end
  local function row(label, m, shape, input_grad)
    m:to(o.device)
    local x = channels_last(miles.randn(table.unpack(shape))):to(o.device)
    x.requires_grad = input_grad
    local gy = miles.no_grad(m, x)
    gy = channels_last(miles.randn(gy:shape())):to(o.device)
    local fwd = time_it(function() miles.no_grad(m, x) end)
    local both = time_it(function()
      m(x):backward(gy)
      m:zero_grad()
      x.grad = nil
    end)
    print(string.format("  %-40s %8.3f %10.3f", label, fwd, both))
  end
  print(string.format("  %-40s %8s %10s", "per layer, batch 64 (ms)", "forward", "fwd+bwd"))
  row("conv 3x3 64->64 on 14x14", nn.Conv2d(64, 64, 3, { padding = 1, bias = false }), { 64, 64, 14, 14 }, true)
  row("conv 3x3 512->512 on 1x1", nn.Conv2d(512, 512, 3, { padding = 1, bias = false }), { 64, 512, 1, 1 }, true)
  row("conv 7x7/2 1->64 on 96x96 (stem)", nn.Conv2d(1, 64, 7, { stride = 2, padding = 3, bias = false }), { 64, 1, 96, 96 }, false)
  row("batch norm 64 on 14x14", nn.BatchNorm2d(64), { 64, 64, 14, 14 }, true)
  row("batch norm + add + relu (fused) on 14x14", BlockEnd({ 64, 64, 14, 14 }), { 64, 64, 14, 14 }, true)
  row("relu on 64x14x14", nn.ReLU(), { 64, 64, 14, 14 }, true)
  row("max pool 3x3/2 on 64x14x14", nn.MaxPool2d(3, { stride = 2, padding = 1 }), { 64, 64, 14, 14 }, true)
  row("linear 512->10", nn.Linear(512, 10), { 64, 512 }, true)
end

local o = parse_args(arg or {})
miles.set_num_threads(o.threads)
if o.device ~= "cpu" then
  local p = io.popen("nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null")
  o.gpu_name = p and p:read("l") or nil
  if p then p:close() end
end
print(string.format("miles %s on %s, %d threads, batch %d, >= %g s per workload", miles.version,
  o.device, o.threads, BATCH, o.seconds))
for _, name in ipairs(o.names) do
  assert(WORKLOADS[name], "unknown workload " .. name .. " (smnist, luma, cremad)")
  run_workload(name, o)
end
layer_times(o)
