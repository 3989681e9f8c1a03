--- miles.models.resnet: ResNets as torchvision builds them, so that parameter
-- names ("conv1.weight", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
-- "fc.bias", ...) and state dicts map one to one onto torchvision's.
--
--   local resnet = require "miles.models.resnet"
--   local enc = resnet.resnet10({ in_channels = 1, widths = {16, 32, 64, 128} })
--   local z = enc(x)              -- (N, enc.out_features): pooled, flattened features
--   local net = resnet.resnet18({ in_channels = 3, num_classes = 1000 })  -- torchvision's
--
-- Options (all optional):
--   in_channels  input channels (default 1: the paper's images and spectrograms)
--   widths       channels of each stage before the block expansion (default
--                {64, 128, 256, 512}; the first #layers are used)
--   stem_width   channels of the stem conv (default widths[1], 64 as torchvision)
--   stem         "imagenet": 7x7/2 conv + BN + ReLU + 3x3/2 max pool (default);
--                "small": 3x3/1 conv + BN + ReLU, no pool (small images)
--   num_classes  with it, a final Linear layer `fc`; without it the model is an
--                encoder that returns the pooled, flattened features
--   zero_init_residual  start each block's last BN weight at 0 (torchvision's flag)
local nn = require "miles.nn"

local resnet = {}

-- 3x3 convolution with padding 1 and no bias (torchvision's conv3x3).
local function conv3x3(cin, cout, stride)
  return nn.Conv2d(cin, cout, 3, { stride = stride or 1, padding = 1, bias = false })
end

-- 1x1 convolution without bias (torchvision's conv1x1).
local function conv1x1(cin, cout, stride)
  return nn.Conv2d(cin, cout, 1, { stride = stride or 1, bias = false })
end

--- BasicBlock(inplanes, planes, stride = 1, downsample = nil): two 3x3 convs
-- with BN, ReLU after the first and after the residual sum (ResNet-6/10/18/34).
-- Each ReLU, and the residual sum, run in the pass of the BN before them (the
-- `relu` modules stay, so that the model prints as torchvision's).
local BasicBlock = nn.Module:extend("BasicBlock")
BasicBlock.expansion = 1

function BasicBlock:init(inplanes, planes, stride, downsample)
  stride = stride or 1
  self.conv1 = conv3x3(inplanes, planes, stride)
  self.bn1 = nn.BatchNorm2d(planes)
  self.relu = nn.ReLU({ inplace = true })
  self.conv2 = conv3x3(planes, planes)
  self.bn2 = nn.BatchNorm2d(planes)
  if downsample then self.downsample = downsample end
  self.stride = stride
end

function BasicBlock:forward(x)
  local out = self.bn1(self.conv1(x), { relu = true })
  local identity = self.downsample and self.downsample(x) or x
  return self.bn2(self.conv2(out), { residual = identity, relu = true })
end

--- Bottleneck(inplanes, planes, stride = 1, downsample = nil): 1x1, 3x3 (with
-- the stride, as torchvision's "v1.5") and 1x1 convs, expanding to 4 * planes
-- channels (ResNet-50 and deeper). The ReLUs and the residual sum run in the
-- BNs' passes, as in BasicBlock.
local Bottleneck = nn.Module:extend("Bottleneck")
Bottleneck.expansion = 4

function Bottleneck:init(inplanes, planes, stride, downsample)
  stride = stride or 1
  self.conv1 = conv1x1(inplanes, planes)
  self.bn1 = nn.BatchNorm2d(planes)
  self.conv2 = conv3x3(planes, planes, stride)
  self.bn2 = nn.BatchNorm2d(planes)
  self.conv3 = conv1x1(planes, planes * 4)
  self.bn3 = nn.BatchNorm2d(planes * 4)
  self.relu = nn.ReLU({ inplace = true })
  if downsample then self.downsample = downsample end
  self.stride = stride
end

function Bottleneck:forward(x)
  local out = self.bn1(self.conv1(x), { relu = true })
  out = self.bn2(self.conv2(out), { relu = true })
  local identity = self.downsample and self.downsample(x) or x
  return self.bn3(self.conv3(out), { residual = identity, relu = true })
end

--- ResNet(block, layers, opts): `layers` lists the blocks per stage; see the
-- options above. The field `out_features` is the size of the feature vector
-- (before `fc`).
local ResNet = nn.Module:extend("ResNet")

-- One stage: `blocks` blocks of `planes`, the first with the stride and, when
-- the shape changes, a 1x1 conv + BN downsample on the shortcut.
local function make_layer(self, block, planes, blocks, stride)
  local downsample
  local out = planes * block.expansion
  if stride ~= 1 or self.inplanes ~= out then
    downsample = nn.Sequential(conv1x1(self.inplanes, out, stride), nn.BatchNorm2d(out))
  end
  local layer = nn.Sequential(block(self.inplanes, planes, stride, downsample))
  self.inplanes = out
  for _ = 2, blocks do
    layer:add(block(self.inplanes, planes))
  end
  return layer
end

-- The stem: conv1, bn1, relu (in bn1's pass) and maxpool (an Identity for the
-- small stem).
local function make_stem(self, in_channels, width, stem)
  if stem == "imagenet" then
    self.conv1 = nn.Conv2d(in_channels, width, 7, { stride = 2, padding = 3, bias = false })
  elseif stem == "small" then
    self.conv1 = conv3x3(in_channels, width, 1)
  else
    error("ResNet: stem must be 'imagenet' or 'small', got " .. tostring(stem), 3)
  end
  self.bn1 = nn.BatchNorm2d(width)
  self.relu = nn.ReLU({ inplace = true })
  self.maxpool = stem == "imagenet" and nn.MaxPool2d(3, { stride = 2, padding = 1 }) or nn.Identity()
end

-- torchvision's initialisation: kaiming_normal_(fan_out, relu) for convs, BN
-- weight 1 and bias 0; optionally the last BN of each block at 0.
local function init_weights(self, zero_init_residual)
  for _, m in ipairs(self:modules()) do
    if getmetatable(m) == nn.Conv2d then
      nn.init.kaiming_normal_(m.weight, { mode = "fan_out", nonlinearity = "relu" })
    elseif getmetatable(m) == nn.BatchNorm2d then
      nn.init.ones_(m.weight)
      nn.init.zeros_(m.bias)
    end
  end
  if zero_init_residual then
    for _, m in ipairs(self:modules()) do
      if getmetatable(m) == Bottleneck then nn.init.zeros_(m.bn3.weight) end
      if getmetatable(m) == BasicBlock then nn.init.zeros_(m.bn2.weight) end
    end
  end
end

function ResNet:init(block, layers, opts)
  opts = opts or {}
  local known = { in_channels = true, widths = true, stem_width = true, stem = true,
                  num_classes = true, zero_init_residual = true }
  for k in pairs(opts) do
    if not known[k] then error("ResNet: unknown option '" .. tostring(k) .. "'", 3) end
  end
  local widths = opts.widths or { 64, 128, 256, 512 }
  assert(#layers >= 1 and #widths >= #layers, ("ResNet: %d stages need %d widths, got %d"):format(
    #layers, #layers, #widths))
  self.inplanes = opts.stem_width or widths[1]
  make_stem(self, opts.in_channels or 1, self.inplanes, opts.stem or "imagenet")
  for i, n in ipairs(layers) do
    self["layer" .. i] = make_layer(self, block, widths[i], n, i == 1 and 1 or 2)
  end
  self.num_stages = #layers
  self.avgpool = nn.AdaptiveAvgPool2d({ 1, 1 })
  self.out_features = widths[#layers] * block.expansion
  if opts.num_classes then
    self.fc = nn.Linear(self.out_features, opts.num_classes)
  end
  init_weights(self, opts.zero_init_residual)
end

function ResNet:forward(x)
  x = self.maxpool(self.bn1(self.conv1(x), { relu = true }))
  for i = 1, self.num_stages do
    x = self["layer" .. i](x)
  end
  x = self.avgpool(x):flatten(2)
  if self.fc then x = self.fc(x) end
  return x
end

resnet.BasicBlock, resnet.Bottleneck, resnet.ResNet = BasicBlock, Bottleneck, ResNet

--- ResNet-6: BasicBlock, [1, 1] (two stages), as the paper's LUMA encoder.
function resnet.resnet6(opts) return ResNet(BasicBlock, { 1, 1 }, opts) end

--- ResNet-10: BasicBlock, [1, 1, 1, 1].
function resnet.resnet10(opts) return ResNet(BasicBlock, { 1, 1, 1, 1 }, opts) end

--- ResNet-18: BasicBlock, [2, 2, 2, 2] (torchvision's resnet18).
function resnet.resnet18(opts) return ResNet(BasicBlock, { 2, 2, 2, 2 }, opts) end

--- ResNet-34: BasicBlock, [3, 4, 6, 3] (torchvision's resnet34).
function resnet.resnet34(opts) return ResNet(BasicBlock, { 3, 4, 6, 3 }, opts) end

--- ResNet-50: Bottleneck, [3, 4, 6, 3] (torchvision's resnet50).
function resnet.resnet50(opts) return ResNet(Bottleneck, { 3, 4, 6, 3 }, opts) end

return resnet
