-- miles.nn.Module and the layers: the class helper, PyTorch's naming, state dicts
-- (round trip, strict and non-strict loads, their errors), train/eval, shared
-- parameters, initialisation statistics, Sequential and the printed forms.
-- Layers whose functional op is not in miles.F yet show as pending.
local miles = require "miles"
local H = require "helpers"
local nn = miles.nn
local F = miles.F

-- `it` when every named function of miles.F exists, else `pending`.
local function with(...)
  for _, name in ipairs({ ... }) do
    if F[name] == nil then return pending end
  end
  return it
end

-- The names of a list of {name, tensor}.
local function names_of(list)
  local out = {}
  for i, p in ipairs(list) do out[i] = p[1] end
  return out
end

local function shape_of(t)
  return table.concat(t:shape(), ",")
end

-- A module with nested children, shaped like a ResNet stage, for naming tests.
local Block = nn.Module:extend("Block")
function Block:init(c)
  self.conv1 = nn.Linear(c, c, { bias = false })
  self.bn1 = nn.BatchNorm1d(c)
  self.relu = nn.ReLU()
  self.downsample = nn.Sequential(nn.Linear(c, c), nn.BatchNorm1d(c))
end
function Block:forward(x)
  return self.relu(self.bn1(self.conv1(x)) + self.downsample(x))
end

local Net = nn.Module:extend("Net")
function Net:init()
  self.fc0 = nn.Linear(3, 4)
  self.layer1 = nn.Sequential(Block(4), Block(4))
  self.head = nn.Linear(4, 2)
end
function Net:forward(x)
  return self.head(self.layer1(self.fc0(x)))
end

describe("nn.Module class helper", function()
  it("makes classes whose instances run forward when called", function()
    local Scale = nn.Module:extend("Scale")
    function Scale:init(n, k)
      self.k = k
      self:register_parameter("weight", miles.ones(n, { requires_grad = true }))
    end
    function Scale:forward(x) return x * self.weight * self.k end
    local m = Scale(3, 2)
    assert.is_true(nn.is_module(m))
    assert.is_false(nn.is_module(Scale))
    assert.is_false(nn.is_module({}))
    assert.equals("Scale", m.__name)
    H.assert_close(m(miles.ones(3)), { 2, 2, 2 })
    assert.is_true(m.training)
  end)

  it("inherits methods and metamethods through several levels", function()
    local A = nn.Module:extend("A")
    function A:init(n) self.n = n end
    function A:forward(x) return x + self.n end
    function A:twice(x) return self(self(x)) end
    local B = A:extend("B")
    function B:init(n) A.init(self, n * 10) end
    local b = B(1)
    assert.equals(B.super, A)
    H.assert_close(b:twice(miles.zeros(2)), { 20, 20 })
    assert.equals("B()", tostring(b))
  end)

  it("registers children on assignment, keeps plain fields plain", function()
    local m = nn.Module()
    m.b = nn.ReLU()
    m.a = nn.Identity()
    m.count = 3
    assert.same({ "b", "a" }, names_of(m:named_children()))
    assert.equals(3, rawget(m, "count"))
    m.b = nil
    assert.same({ "a" }, names_of(m:named_children()))
    assert.is_nil(m.b)
  end)

  it("refuses a name used by another kind of member", function()
    local m = nn.Module()
    m:register_parameter("w", miles.zeros(2, { requires_grad = true }))
    assert.has_error(function() m:register_buffer("w", miles.zeros(2)) end)
    assert.has_error(function() m:add_module("w", nn.ReLU()) end)
    assert.has_error(function() m:register_buffer("a.b", miles.zeros(2)) end)
    assert.has_error(function() m.w = "not a tensor" end)
  end)

  it("refuses a non-leaf tensor as a parameter", function()
    local w = miles.ones(2, { requires_grad = true })
    local m = nn.Module()
    assert.has_error(function() m:register_parameter("w", w * 2) end)
  end)

  it("calls apply on the children first, then on the module", function()
    local seen = {}
    local net = nn.Sequential(nn.ReLU(), nn.Sequential(nn.Identity()))
    net:apply(function(m) seen[#seen + 1] = m.__name end)
    assert.same({ "ReLU", "Identity", "Sequential", "Sequential" }, seen)
  end)
end)

describe("nn.Module names", function()
  it("names parameters with dotted paths exactly as PyTorch", function()
    local net = Net()
    assert.same({
      "fc0.weight", "fc0.bias",
      "layer1.0.conv1.weight", "layer1.0.bn1.weight", "layer1.0.bn1.bias",
      "layer1.0.downsample.0.weight", "layer1.0.downsample.0.bias",
      "layer1.0.downsample.1.weight", "layer1.0.downsample.1.bias",
      "layer1.1.conv1.weight", "layer1.1.bn1.weight", "layer1.1.bn1.bias",
      "layer1.1.downsample.0.weight", "layer1.1.downsample.0.bias",
      "layer1.1.downsample.1.weight", "layer1.1.downsample.1.bias",
      "head.weight", "head.bias",
    }, names_of(net:named_parameters()))
  end)

  it("orders the state dict as PyTorch: own parameters, own buffers, then children", function()
    local _, names = Block(2):state_dict()
    assert.same({
      "conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
      "bn1.num_batches_tracked", "downsample.0.weight", "downsample.0.bias",
      "downsample.1.weight", "downsample.1.bias", "downsample.1.running_mean",
      "downsample.1.running_var", "downsample.1.num_batches_tracked",
    }, names)
  end)

  it("lists buffers, children and modules", function()
    local b = Block(2)
    assert.same({ "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
      "downsample.1.running_mean", "downsample.1.running_var",
      "downsample.1.num_batches_tracked" }, names_of(b:named_buffers()))
    assert.equals(6, #b:buffers())
    assert.same({ "conv1", "bn1", "relu", "downsample" }, names_of(b:named_children()))
    assert.same({ "", "conv1", "bn1", "relu", "downsample", "downsample.0", "downsample.1" },
      names_of(b:named_modules()))
    assert.equals(7, #b:modules())
    assert.equals(0, #b:named_parameters(false), "own parameters only: none")
    assert.equals(1, #b.conv1:named_parameters(false))
  end)

  it("keeps a nil parameter slot out of the lists (bias = false)", function()
    local l = nn.Linear(3, 2, { bias = false })
    assert.is_nil(l.bias)
    assert.same({ "weight" }, names_of(l:named_parameters()))
    local sd = l:state_dict()
    assert.is_nil(sd.bias)
  end)

  it("keeps non-persistent buffers out of the state dict", function()
    local m = nn.Module()
    m:register_buffer("kept", miles.zeros(2))
    m:register_buffer("scratch", miles.zeros(2), false)
    assert.same({ "kept", "scratch" }, names_of(m:named_buffers()))
    local _, names = m:state_dict()
    assert.same({ "kept" }, names)
  end)

  it("stores num_batches_tracked as a 0-dim int64, as PyTorch", function()
    local sd = nn.BatchNorm2d(4):state_dict()
    assert.equals("int64", sd.num_batches_tracked:dtype())
    assert.equals(0, #sd.num_batches_tracked:shape())
    assert.equals(0, sd.num_batches_tracked:item())
  end)
end)

describe("nn.Module shared parameters", function()
  it("lists a module used twice once, but saves it under both names", function()
    local shared = nn.Linear(4, 4)
    local net = nn.Sequential(shared, nn.ReLU(), shared)
    assert.same({ "0.weight", "0.bias" }, names_of(net:named_parameters()))
    assert.equals(2, #net:parameters())
    assert.equals(20, net:num_parameters())
    local sd = net:state_dict()
    assert.truthy(sd["0.weight"] and sd["2.weight"])
    assert.equals(3, #net:modules())
  end)

  it("counts a tied tensor once", function()
    local a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    b.weight = a.weight
    local net = nn.Sequential(a, b)
    assert.same({ "0.weight", "0.bias", "1.bias" }, names_of(net:named_parameters()))
    assert.equals(9 + 3 + 3, net:num_parameters())
  end)

  it("returns the modules' own tensors on every call (no flattening)", function()
    local net = Net()
    local p1, p2 = net:parameters(), net:parameters()
    assert.equals(#p1, #p2)
    for i = 1, #p1 do assert.is_true(rawequal(p1[i], p2[i])) end
    assert.is_true(rawequal(p1[1], net.fc0.weight))
    miles.no_grad(function() p1[1]:fill_(0.25) end)
    assert.equals(0.25, net.fc0.weight[1][1]:item())
  end)

  it("counts trainable parameters separately", function()
    local l = nn.Linear(3, 2)
    l.bias.requires_grad = false
    assert.equals(8, l:num_parameters())
    assert.equals(6, l:num_parameters(true))
  end)
end)

describe("nn.Module train, eval and gradients", function()
  it("switches every descendant", function()
    local net = Net()
    assert.is_true(net.layer1[2].bn1.training)
    assert.equals(net, net:eval())
    for _, m in ipairs(net:modules()) do assert.is_false(m.training) end
    net:train()
    for _, m in ipairs(net:modules()) do assert.is_true(m.training) end
    net:train(false)
    assert.is_false(net.head.training)
  end)

  it("zero_grad drops every gradient", function()
    local net = Net()
    net(miles.randn(5, 3)):sum():backward()
    for _, p in ipairs(net:parameters()) do assert.is_not_nil(p.grad) end
    net:zero_grad()
    for _, p in ipairs(net:parameters()) do assert.is_nil(p.grad) end
  end)

  with("batch_norm")("updates BatchNorm's running statistics only in training", function()
    local bn = nn.BatchNorm1d(3)
    local x = miles.randn(16, 3) * 2 + 1
    bn(x)
    assert.equals(1, bn.num_batches_tracked:item())
    local mean = x:mean(1)
    H.assert_close(bn.running_mean, mean * 0.1, 1e-4, 1e-5, "running_mean")
    H.assert_close(bn.running_var, x:var(1) * 0.1 + 0.9, 1e-4, 1e-5, "running_var (unbiased)")
    bn:eval()
    local rm = bn.running_mean:clone()
    local y = bn(x)
    H.assert_close(bn.running_mean, rm, 0, 0, "eval keeps running_mean")
    assert.equals(1, bn.num_batches_tracked:item())
    H.assert_close(y, (x - rm) / (bn.running_var + 1e-5):sqrt(), 1e-4, 1e-5, "eval output")
  end)

  with("batch_norm")("uses a cumulative average when momentum = false (PyTorch's None)", function()
    local bn = nn.BatchNorm1d(2, { momentum = false })
    local a, b = miles.randn(8, 2), miles.randn(8, 2)
    bn(a)
    bn(b)
    H.assert_close(bn.running_mean, (a:mean(1) + b:mean(1)) / 2, 1e-4, 1e-5)
    assert.equals("BatchNorm1d(2, eps=1e-05, momentum=None, affine=True, track_running_stats=True)",
      tostring(bn))
  end)

  with("dropout")("applies Dropout only in training", function()
    local d = nn.Dropout(0.5)
    local x = miles.ones(1000)
    local y = d(x)
    local zeros = y:eq(0):to("int64"):sum():item()
    assert.is_true(zeros > 350 and zeros < 650, "about half dropped, got " .. zeros)
    d:eval()
    H.assert_close(d(x), x, 0, 0)
  end)
end)

describe("nn.Module state_dict", function()
  it("round-trips into another model, in place", function()
    miles.manual_seed(1)
    local a, b = Net(), Net()
    miles.no_grad(function() a.layer1[1].bn1.running_mean:fill_(0.5) end)
    local w_before = b.fc0.weight
    local res = b:load_state_dict(a:state_dict())
    assert.same({}, res.missing_keys)
    assert.same({}, res.unexpected_keys)
    assert.is_true(rawequal(w_before, b.fc0.weight))
    local sa = a:state_dict()
    for name, t in pairs(b:state_dict()) do
      H.assert_close(t, sa[name], 0, 0, name)
    end
    a:eval(); b:eval()
    local x = miles.randn(4, 3)
    H.assert_close(b(x), a(x), 0, 0, "outputs")
  end)

  it("shares memory with the module's tensors", function()
    local l = nn.Linear(2, 2)
    local sd = l:state_dict()
    assert.is_true(sd.weight:shares_storage(l.weight))
    assert.is_false(sd.weight.requires_grad)
  end)

  it("names the first missing key in strict mode", function()
    local sd = Net():state_dict()
    sd["layer1.1.conv1.weight"] = nil
    local err = H.error_of(function() Net():load_state_dict(sd) end)
    assert.truthy(err:find("load_state_dict: missing key layer1.1.conv1.weight", 1, true), err)
  end)

  it("names the first unexpected key in strict mode", function()
    local sd = Net():state_dict()
    sd["extra.weight"] = miles.zeros(1)
    sd["aaa"] = miles.zeros(1)
    local err = H.error_of(function() Net():load_state_dict(sd) end)
    assert.truthy(err:find("load_state_dict: unexpected key aaa (and 1 more unexpected)", 1, true),
      err)
  end)

  it("names the tensor and both shapes on a mismatch, and changes nothing", function()
    local big = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    local small = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 5))
    local before = small[1].weight:clone()
    local err = H.error_of(function() small:load_state_dict(big:state_dict()) end)
    assert.truthy(err:find("load_state_dict: 1.weight has shape [2,3] in the checkpoint but "
      .. "[5,3] in the model", 1, true), err)
    H.assert_close(small[1].weight, before, 0, 0, "unchanged after a failed load")
    err = H.error_of(function() small:load_state_dict(big:state_dict(), { strict = false }) end)
    assert.truthy(err:find("has shape", 1, true), "shape errors even when not strict")
  end)

  it("reports missing and unexpected keys when not strict", function()
    local m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    local sd = m:state_dict()
    sd["1.running_var"] = nil
    sd["junk"] = miles.zeros(1)
    local res = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)):load_state_dict(sd,
      { strict = false })
    assert.same({ "1.running_var" }, res.missing_keys)
    assert.same({ "junk" }, res.unexpected_keys)
  end)

  it("converts values to the model's dtypes", function()
    local l = nn.Linear(2, 1)
    local sd = { weight = miles.tensor({ { 1, 2 } }, { dtype = "float64" }),
                 bias = miles.tensor({ 3 }, { dtype = "float64" }) }
    l:load_state_dict(sd)
    assert.equals("float32", l.weight:dtype())
    H.assert_close(l(miles.ones(1, 2)), { { 6 } })
  end)
end)

describe("nn initialisation", function()
  -- mean and standard deviation of a tensor, as Lua numbers.
  local function stats(t)
    local x = t:to("float64")
    return x:mean():item(), x:std():item(), x:abs():max():item()
  end

  it("draws Linear and Conv2d as PyTorch: U(-1/sqrt(fan_in), 1/sqrt(fan_in))", function()
    miles.manual_seed(3)
    local l = nn.Linear(256, 128)
    local bound = 1 / math.sqrt(256)
    local mean, std, amax = stats(l.weight)
    assert.is_true(amax <= bound, "within the bound")
    assert.is_true(amax > 0.95 * bound, "reaches near the bound")
    assert.is_true(math.abs(mean) < 0.05 * bound, "mean near 0: " .. mean)
    assert.is_true(math.abs(std - bound / math.sqrt(3)) < 0.03 * bound, "uniform std: " .. std)
    assert.is_true(select(3, stats(l.bias)) <= bound, "bias within the bound")
    local c = nn.Conv2d(16, 32, 3)
    local cb = 1 / math.sqrt(16 * 9)
    mean, std, amax = stats(c.weight)
    assert.is_true(amax <= cb and math.abs(std - cb / math.sqrt(3)) < 0.05 * cb)
    assert.is_true(select(3, stats(c.bias)) <= cb)
  end)

  it("starts BatchNorm at weight 1, bias 0, mean 0, variance 1", function()
    local bn = nn.BatchNorm2d(5)
    H.assert_close(bn.weight, miles.ones(5), 0, 0)
    H.assert_close(bn.bias, miles.zeros(5), 0, 0)
    H.assert_close(bn.running_mean, miles.zeros(5), 0, 0)
    H.assert_close(bn.running_var, miles.ones(5), 0, 0)
    assert.is_true(bn.weight.requires_grad)
    assert.is_false(bn.running_mean.requires_grad)
  end)

  it("is reproducible under manual_seed", function()
    miles.manual_seed(42)
    local a = nn.Conv2d(3, 4, 3)
    miles.manual_seed(42)
    local b = nn.Conv2d(3, 4, 3)
    H.assert_close(a.weight, b.weight, 0, 0)
    H.assert_close(a.bias, b.bias, 0, 0)
  end)

  it("computes fans and gains as PyTorch", function()
    local init = nn.init
    local fi, fo = init.calculate_fan_in_and_fan_out(miles.zeros(32, 16, 3, 3))
    assert.equals(144, fi)
    assert.equals(288, fo)
    assert.equals(math.sqrt(2), init.calculate_gain("relu"))
    assert.equals(5 / 3, init.calculate_gain("tanh"))
    assert.is_true(math.abs(init.calculate_gain("leaky_relu", math.sqrt(5)) - math.sqrt(1 / 3))
      < 1e-12)
    assert.has_error(function() init.calculate_fan_in_and_fan_out(miles.zeros(3)) end)
  end)

  it("kaiming_normal_ (fan_out, relu) and xavier_uniform_ have the right spread", function()
    miles.manual_seed(5)
    local w = miles.zeros(64, 32, 3, 3)
    nn.init.kaiming_normal_(w, { mode = "fan_out", nonlinearity = "relu" })
    local _, std = stats(w)
    local want = math.sqrt(2) / math.sqrt(64 * 9)
    assert.is_true(math.abs(std - want) < 0.03 * want, ("std %g, want %g"):format(std, want))
    local v = miles.zeros(100, 200)
    nn.init.xavier_uniform_(v)
    local _, _, amax = stats(v)
    local bound = math.sqrt(6 / 300)
    assert.is_true(amax <= bound and amax > 0.95 * bound)
    nn.init.constant_(v, 0.5)
    assert.equals(0.5, v:mean():item())
  end)

  it("fills leaves that require grad without recording", function()
    local w = miles.zeros(3, 3, { requires_grad = true })
    nn.init.ones_(w)
    assert.is_true(w.is_leaf)
    assert.equals(9, w:sum():item())
  end)
end)

describe("nn.Sequential", function()
  it("is indexable from 1, with # and add; children named from 0", function()
    local a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    local s = nn.Sequential(a, b)
    assert.equals(2, #s)
    assert.is_true(rawequal(s[1], a))
    assert.is_true(rawequal(s[-1], b))
    assert.is_nil(s[3])
    assert.equals(s, s:add(c))
    assert.equals(3, #s)
    assert.same({ "0", "1", "2" }, names_of(s:named_children()))
    local x = miles.randn(4, 2)
    H.assert_close(s(x), c(b(a(x))), 0, 0)
  end)

  it("accepts a list of modules and refuses other values", function()
    local s = nn.Sequential({ nn.Identity(), nn.Identity() })
    assert.equals(2, #s)
    assert.has_error(function() nn.Sequential(nn.ReLU(), 3) end)
    local x = miles.randn(2)
    H.assert_close(nn.Sequential()(x), x, 0, 0)
  end)
end)

describe("nn layers", function()
  it("Linear computes x W^T + b", function()
    local l = nn.Linear(3, 2)
    local x = miles.randn(4, 3)
    H.assert_close(l(x), x:matmul(l.weight:t()) + l.bias, 1e-5, 1e-6)
  end)

  it("reads PyTorch's arguments positionally or as options, and refuses unknown ones", function()
    local a = nn.Conv2d(3, 8, 3, 2, 1)
    local b = nn.Conv2d(3, 8, 3, { stride = 2, padding = 1 })
    assert.equals(tostring(a), tostring(b))
    local err = H.error_of(function() nn.Conv2d(3, 8, 3, { strid = 2 }) end)
    assert.truthy(err:find("unknown option 'strid'", 1, true), err)
    assert.has_error(function() nn.Conv2d(3, 8, 3, 2, { stride = 2 }) end)
    assert.has_error(function() nn.Conv2d(3, 8, 3, { groups = 2 }) end)
    assert.same({ 1, 1 }, nn.Conv2d(3, 8, 3, { padding = "same" }).padding)
    assert.same({ 8, 3, 3, 3 }, a.weight:shape())
    assert.same({ 8, 2, 3, 3 }, nn.Conv2d(4, 8, 3, { groups = 2 }).weight:shape())
  end)

  it("prints as PyTorch prints the same modules", function()
    local cases = {
      { nn.Conv2d(3, 64, 7, { stride = 2, padding = 3, bias = false }),
        "Conv2d(3, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)" },
      { nn.Conv2d(3, 8, 3, { padding = "same" }),
        "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=same)" },
      { nn.Conv2d(4, 8, 3, { dilation = 2, groups = 2 }),
        "Conv2d(4, 8, kernel_size=(3, 3), stride=(1, 1), dilation=(2, 2), groups=2)" },
      { nn.BatchNorm2d(64),
        "BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)" },
      { nn.MaxPool2d(3, 2, 1),
        "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)" },
      { nn.AvgPool2d(2), "AvgPool2d(kernel_size=2, stride=2, padding=0)" },
      { nn.AdaptiveAvgPool2d({ 1, 1 }), "AdaptiveAvgPool2d(output_size=(1, 1))" },
      { nn.AdaptiveAvgPool2d(1), "AdaptiveAvgPool2d(output_size=1)" },
      { nn.Linear(512, 1000), "Linear(in_features=512, out_features=1000, bias=True)" },
      { nn.ReLU({ inplace = true }), "ReLU(inplace=True)" },
      { nn.ReLU(), "ReLU()" },
      { nn.Dropout(), "Dropout(p=0.5, inplace=False)" },
      { nn.Dropout(0), "Dropout(p=0, inplace=False)" },
      { nn.Identity(), "Identity()" },
      { nn.Flatten(), "Flatten(start_dim=2, end_dim=-1)" },
      { nn.Sequential(nn.Linear(4, 2), nn.Sequential(nn.ReLU())),
        "Sequential(\n  (0): Linear(in_features=4, out_features=2, bias=True)\n"
        .. "  (1): Sequential(\n    (0): ReLU()\n  )\n)" },
    }
    for _, c in ipairs(cases) do
      assert.equals(c[2], tostring(c[1]))
    end
  end)

  it("Flatten keeps the batch dim by default; Identity returns its input", function()
    local x = miles.randn(2, 3, 4, 5)
    assert.same({ 2, 60 }, nn.Flatten()(x):shape())
    assert.same({ 2, 3, 20 }, nn.Flatten(3)(x):shape())
    assert.is_true(rawequal(nn.Identity(1, 2)(x), x))
    H.assert_close(nn.ReLU()(miles.tensor({ -1, 2 })), { 0, 2 })
  end)

  with("conv2d")("Conv2d gives PyTorch's output shape", function()
    local c = nn.Conv2d(3, 8, 3, { stride = 2, padding = 1 })
    assert.same({ 2, 8, 5, 5 }, c(miles.randn(2, 3, 9, 9)):shape())
    local g = nn.Conv2d(4, 8, 3, { dilation = 2, groups = 2, bias = false })
    assert.same({ 1, 8, 6, 6 }, g(miles.randn(1, 4, 10, 10)):shape())
  end)

  with("max_pool2d")("MaxPool2d gives PyTorch's output shape", function()
    assert.same({ 1, 2, 4, 4 }, nn.MaxPool2d(3, 2, 1)(miles.randn(1, 2, 8, 8)):shape())
    assert.same({ 1, 2, 4, 4 }, nn.MaxPool2d(2, { ceil_mode = true })(miles.randn(1, 2, 7, 7)):shape())
  end)

  with("avg_pool2d")("AvgPool2d averages windows", function()
    local x = miles.arange(16, { dtype = "float32" }):reshape(1, 1, 4, 4)
    H.assert_close(nn.AvgPool2d(2)(x), { { { { 2.5, 4.5 }, { 10.5, 12.5 } } } })
  end)

  with("adaptive_avg_pool2d")("AdaptiveAvgPool2d pools to the asked size", function()
    local x = miles.randn(2, 3, 7, 5)
    local y = nn.AdaptiveAvgPool2d(1)(x)
    assert.same({ 2, 3, 1, 1 }, y:shape())
    H.assert_close(y:flatten(2), x:mean(4):mean(3), 1e-5, 1e-6)
  end)

  with("batch_norm")("BatchNorm2d normalises each channel over N, H, W in training", function()
    local bn = nn.BatchNorm2d(3)
    local x = miles.randn(4, 3, 5, 5) * 3 + 2
    local y = bn(x)
    local m = y:permute(2, 1, 3, 4):reshape(3, -1)
    H.assert_close(m:mean(2), miles.zeros(3), 0, 1e-4, "channel means")
    H.assert_close(m:var(2, { correction = 0 }), miles.ones(3), 1e-3, 1e-3, "channel variances")
    assert.has_error(function() bn(miles.randn(4, 3)) end)
  end)
end)
