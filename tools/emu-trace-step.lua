-- The reference workload's training step (experiments/bench.lua's cremad: two
-- ResNet-18, concat fusion, three losses, Adam over three groups) on the emulated
-- GPU, three steps, each followed by miles.cuda.synchronize(), for a trace of
-- what one step asks of the GPU (spec/c/fake_cudart.c):
--   MILES_FAKE_TRACE=/tmp/trace MILES_CUBLAS=$(ls $PWD/build-emu/lib/libcublas.so.*) \
--     build-emu/bin/miles tools/emu-trace-step.lua [batch [size [f32]]]
--   tools/emu-trace.pl build-emu/bin/miles /tmp/trace 3
-- (segment 3: the third step, plans made and caches warm). Batch 2 at 32x32 (the
-- defaults) takes about 5 minutes; bf16 autocast unless "f32".
local miles = require "miles"
local nn, F = miles.nn, miles.F
local models = require "miles.models"
local optim = require "miles.optim"

local batch, size = tonumber(arg[1] or 2), tonumber(arg[2] or 32)
local bf16 = arg[3] ~= "f32"
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
  for i = 1, 3 do
    step()
    miles.cuda.synchronize()
    io.stderr:write("step ", i, " traced\n")
  end
end)
