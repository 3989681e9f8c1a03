-- miles.models.resnet: structure, parameter names and counts against torchvision's
-- (spec/fixtures/resnet/, made by make_resnet_fixtures.py with PyTorch), output
-- shapes on the reference workloads of bench/torch_ref.py, and a forward parity
-- check against a PyTorch ResNet-10 in eval and train mode.
local miles = require "miles"
local H = require "helpers"
local resnet = require "miles.models.resnet"
local models = require "miles.models"

local FIX = H.fixtures .. "resnet/"

-- The fixture's configurations: name -> {count = n, entries = {{kind, name, shape}}}.
local function read_structure()
  local configs, cur = {}, nil
  for line in io.lines(FIX .. "structure.txt") do
    local name, count = line:match("^config (%S+) (%d+)$")
    if name then
      cur = { count = tonumber(count), entries = {} }
      configs[name] = cur
    elseif not line:match("^#") and line ~= "" then
      local kind, n, shape = line:match("^(%S+) (%S+) (%S+)$")
      cur.entries[#cur.entries + 1] = { kind, n, shape == "-" and "" or shape }
    end
  end
  return configs
end

-- The Lua twin of each fixture configuration.
local BUILD = {
  resnet18_imagenet = function() return resnet.resnet18({ in_channels = 3, num_classes = 1000 }) end,
  resnet34_imagenet = function() return resnet.resnet34({ in_channels = 3, num_classes = 1000 }) end,
  resnet50_imagenet = function() return resnet.resnet50({ in_channels = 3, num_classes = 1000 }) end,
  resnet10_smnist = function() return resnet.resnet10({ in_channels = 1 }) end,
  resnet6_luma = function() return resnet.resnet6({ in_channels = 1 }) end,
  resnet10_w8_small = function()
    return resnet.resnet10({ in_channels = 3, widths = { 8, 16, 32, 64 }, stem = "small",
                             num_classes = 10 })
  end,
}

-- A model's state dict as {{kind, name, shape}} in order.
local function entries_of(m)
  local params = {}
  for _, p in ipairs(m:named_parameters()) do params[p[1]] = true end
  local sd, names = m:state_dict()
  local out = {}
  for i, n in ipairs(names) do
    out[i] = { params[n] and "param" or "buffer", n, table.concat(sd[n]:shape(), ",") }
  end
  return out
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

describe("resnet structure", function()
  local configs = read_structure()

  for _, name in ipairs({ "resnet18_imagenet", "resnet34_imagenet", "resnet50_imagenet",
                          "resnet10_smnist", "resnet6_luma", "resnet10_w8_small" }) do
    it(name .. " has torchvision's parameter names, shapes, order and count", function()
      local want = configs[name]
      assert.is_not_nil(want, "fixture config " .. name)
      local m = BUILD[name]()
      local got = entries_of(m)
      for i = 1, math.max(#got, #want.entries) do
        local g, w = got[i] or {}, want.entries[i] or {}
        assert.equals(table.concat(w, " "), table.concat(g, " "), "state_dict entry " .. i)
      end
      assert.equals(want.count, m:num_parameters())
    end)
  end

  it("matches torchvision's published counts", function()
    assert.equals(11689512, read_structure().resnet18_imagenet.count)
    assert.equals(21797672, read_structure().resnet34_imagenet.count)
    assert.equals(25557032, read_structure().resnet50_imagenet.count)
  end)

  it("prints as PyTorch prints torchvision's resnet18", function()
    local want = read_file(FIX .. "resnet18_repr.txt"):gsub("\n$", "")
    assert.equals(want, tostring(resnet.resnet18({ in_channels = 3, num_classes = 1000 })))
  end)

  it("is exported by miles.models", function()
    assert.equals(resnet, models.resnet)
    assert.equals(resnet.resnet18, models.resnet18)
  end)

  it("builds an encoder without fc when num_classes is not given", function()
    local m = resnet.resnet18()
    assert.is_nil(m.fc)
    assert.equals(512, m.out_features)
    assert.equals(64, resnet.resnet50({ widths = { 4, 8, 8, 16 } }).out_features)
    assert.equals(128, resnet.resnet6().out_features)
    assert.equals(64, resnet.resnet10({ widths = { 8, 16, 32, 64 } }).out_features)
    for _, p in ipairs(m:named_parameters()) do
      assert.is_nil(p[1]:find("^fc"), p[1])
    end
  end)

  it("refuses unknown options and stems", function()
    assert.has_error(function() resnet.resnet10({ in_chanels = 3 }) end)
    assert.has_error(function() resnet.resnet10({ stem = "tiny" }) end)
    assert.has_error(function() resnet.resnet10({ widths = { 8, 16 } }) end)
  end)
end)

describe("resnet initialisation", function()
  it("uses torchvision's: kaiming_normal_(fan_out, relu) convs, BN 1 and 0", function()
    miles.manual_seed(0)
    local m = resnet.resnet18()
    local w = m.layer3[1].conv1.weight:to("float64") -- (256, 128, 3, 3)
    local want = math.sqrt(2 / (256 * 9))
    local std = w:std():item()
    assert.is_true(math.abs(std - want) < 0.02 * want, ("std %g, want %g"):format(std, want))
    H.assert_close(m.layer2[1].bn1.weight, miles.ones(128), 0, 0)
    H.assert_close(m.layer2[1].bn1.bias, miles.zeros(128), 0, 0)
  end)

  it("zeroes each block's last BN weight with zero_init_residual", function()
    local m = resnet.resnet10({ zero_init_residual = true, widths = { 8, 16, 32, 64 } })
    H.assert_close(m.layer1[1].bn2.weight, miles.zeros(8), 0, 0)
    H.assert_close(m.layer1[1].bn1.weight, miles.ones(8), 0, 0)
    local b = resnet.resnet50({ zero_init_residual = true, widths = { 4, 8, 8, 8 } })
    H.assert_close(b.layer1[1].bn3.weight, miles.zeros(16), 0, 0)
  end)
end)

describe("resnet forward", function()
  it("smnist: resnet10 on 1x28x28 gives a 512-d feature vector", function()
    local m = resnet.resnet10({ in_channels = 1 })
    assert.same({ 2, 512 }, m(miles.randn(2, 1, 28, 28)):shape())
  end)

  it("luma: resnet6 on 1x96x96 gives a 128-d feature vector", function()
    local m = resnet.resnet6({ in_channels = 1 })
    assert.same({ 2, 128 }, m(miles.randn(2, 1, 96, 96)):shape())
  end)

  for _, case in ipairs({ { "resnet18", 512 }, { "resnet34", 512 }, { "resnet50", 2048 } }) do
    it(case[1] .. " on a small input gives the classes", function()
      local m = resnet[case[1]]({ in_channels = 3, num_classes = 10 })
      assert.equals(case[2], m.out_features)
      assert.same({ 1, 10 }, m:eval()(miles.randn(1, 3, 32, 32)):shape())
    end)
  end

  it("the small stem keeps the resolution (no stride, no pool)", function()
    local m = resnet.resnet10({ in_channels = 3, stem = "small", widths = { 4, 8, 16, 32 } })
    assert.equals("Identity", m.maxpool.__name)
    local x = miles.randn(2, 3, 16, 16)
    local stem = m.bn1(m.conv1(x), { relu = true })
    assert.same({ 2, 4, 16, 16 }, stem:shape())
    assert.same({ 2, 32 }, m(x):shape())
  end)

  it("gives every parameter a gradient", function()
    local m = resnet.resnet10({ in_channels = 1, widths = { 4, 8, 8, 8 }, num_classes = 3 })
    local y = m(miles.randn(2, 1, 28, 28))
    miles.F.cross_entropy(y, miles.tensor({ 1, 3 })):backward()
    for _, p in ipairs(m:named_parameters()) do
      assert.is_not_nil(p[2].grad, p[1] .. " has no gradient")
    end
  end)
end)

describe("resnet parity with PyTorch", function()
  local weights = miles.load_safetensors(FIX .. "resnet10_w8.safetensors")
  local io = miles.load_safetensors(FIX .. "resnet10_w8_io.safetensors")

  local function model()
    local m = resnet.resnet10({ in_channels = 1, widths = { 8, 16, 32, 64 }, num_classes = 10 })
    m:load_state_dict(weights)
    return m
  end

  it("loads a PyTorch state_dict one to one", function()
    local m = model()
    H.assert_close(m.layer2[1].downsample[1].weight, weights["layer2.0.downsample.0.weight"], 0, 0)
    assert.equals(7, m.layer4[1].bn2.num_batches_tracked:item())
  end)

  it("matches PyTorch's eval-mode output", function()
    local m = model():eval()
    local y = miles.no_grad(function() return m(io.x) end)
    H.assert_close(y, io.y_eval, 1e-4, 1e-5, "eval output")
  end)

  it("matches PyTorch's train-mode output and running statistics", function()
    local m = model():train()
    local y = miles.no_grad(function() return m(io.x) end)
    H.assert_close(y, io.y_train, 1e-4, 1e-4, "train output")
    H.assert_close(m.bn1.running_mean, io["bn1.running_mean"], 1e-4, 1e-6, "bn1.running_mean")
    H.assert_close(m.bn1.running_var, io["bn1.running_var"], 1e-4, 1e-6, "bn1.running_var")
    H.assert_close(m.layer4[1].bn2.running_var, io["layer4.0.bn2.running_var"], 1e-4, 1e-6,
      "layer4.0.bn2.running_var")
    assert.equals(io["bn1.num_batches_tracked"]:item(), m.bn1.num_batches_tracked:item())
  end)
end)
