--- miles.models: ready-made networks. `miles.models.resnet` holds the ResNet
-- family (resnet6, resnet10, resnet18, resnet34, resnet50), also exported here.
local models = {}
models.resnet = require "miles.models.resnet"
for _, name in ipairs({ "resnet6", "resnet10", "resnet18", "resnet34", "resnet50" }) do
  models[name] = models.resnet[name]
end
return models
