-- The reference workload's training step (experiments/bench.lua's cremad: two
-- ResNet-18, concat fusion, three losses, Adam over three groups) on the emulated
-- GPU, `steps` times, each followed by miles.cuda.synchronize(); for each step the
-- time the host took to queue it, and the device allocations it made.
--   MILES_CUBLAS=$(ls $PWD/build-emu/lib/libcublas.so.*) \
--     build-emu/bin/miles tools/emu-step.lua [batch [size [f32|bf16 [steps]]]]
-- (defaults: 2, 32, bf16 autocast, 3 steps.) Two uses:
--  - MILES_FAKE_TRACE=/tmp/trace, then `tools/emu-trace.pl build-emu/bin/miles
--    /tmp/trace 3`: what the third step (plans made, caches warm) asks of the GPU
--    (batch 2 at 32x32 takes about 5 minutes);
--  - MILES_FAKE_SKIP=1 (nothing runs on the emulated GPU but copies and sets):
--    the host's own time per step, at full size in seconds (the fake GPU holds 4
--    GiB: batch 32 at 224x224 fits, 64 in float32 does not, and its allocator
--    then empties its cache every step).
local miles = require "miles"
local nn, F = miles.nn, miles.F
local models = require "miles.models"
local optim = require "miles.optim"

local batch, size = tonumber(arg[1] or 2), tonumber(arg[2] or 32)
local bf16, steps = arg[3] ~= "f32", tonumber(arg[4] or 3)
miles.manual_seed(0)
local ea = models.resnet18({ in_channels = 1 })
local eb = models.resnet18({ in_channels = 3 })
local ha, hb = nn.Linear(ea.out_features, 6), nn.Linear(eb.out_features, 6)
local hab = nn.Linear(ea.out_features + eb.out_features, 6)
local heads = {}
for _, m in ipairs({ ea, eb, ha, hb, hab }) do m:to("cuda") end
for _, m in ipairs({ ha, hb, hab }) do
  for _, p in ipairs(m:parameters()) do heads[#heads + 1] = p end
end
local opt = optim.Adam({ { name = "a", params = ea:parameters() },
  { name = "b", params = eb:parameters() }, { name = "fusion", params = heads } }, { lr = 1e-3 })
local a = miles.randn(batch, 1, size, size):to("cuda")
local b = miles.randn(batch, 3, size, size):to("cuda")
local y = miles.randint(1, 7, { batch }):to("cuda")

local function step()
  opt:zero_grad()
  local za, zb = ea(a), eb(b)
  local loss = F.cross_entropy(hab(miles.cat({ za, zb }, 2)), y) + F.cross_entropy(ha(za), y)
    + F.cross_entropy(hb(zb), y)
  loss:backward()
  opt:step()
end

miles.autocast(bf16, function()
  for i = 1, steps do
    local allocs, t0 = miles.cuda.memory_stats().allocations, miles.wall_time()
    step()
    local host = miles.wall_time() - t0
    miles.cuda.synchronize()
    print(("step %d: queued in %.2f ms, %d device allocations"):format(i, host * 1000,
      miles.cuda.memory_stats().allocations - allocs))
  end
end)
