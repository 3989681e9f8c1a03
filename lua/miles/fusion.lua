--- miles.fusion: joint-fusion models (one encoder per modality, one linear unimodal
-- head per encoder, one fusion head).
--
--   local fusion = require "miles.fusion"
--   local model = fusion.Model{
--     encoders = { audio = enc_a, image = enc_b },  -- modules returning [B, d_i]
--     order = { "audio", "image" },                 -- default: sorted names
--     classes = 10,
--     fusion = "concat",     -- "concat" | "sum" | a module | function(latents) -> logits
--     head_mode = "loss",    -- "loss" | "probe" (heads read latent:detach())
--     dims = { audio = 16 }, -- optional: latent sizes of encoders without .out_features
--   }
--   local out = model{ audio = a, image = x }
--   -- out.fused, out.heads.audio, out.heads.image, out.latents.audio, ...
--   model:param_groups()   -- {{name="audio", params=encoder+head}, ..., {name="fusion", ...}}
--
-- A custom fusion head receives the list of latent vectors in `order` and returns
-- the fused logits. A module's parameters form the "fusion" group; a plain function
-- has none (the group is then empty). Unimodal heads never see the fusion head.
local nn = require "miles.nn"
local core = require "miles.core"

local fusion = {}

-- A plain container of named children (state dict names "heads.audio.weight").
local Dict = nn.Module:extend("ModuleDict")

-- The latent size of an encoder: opts.dims[name], enc.out_features, or the
-- out_features of its last submodule that has one (Linear in a Sequential).
local function latent_dim(name, enc, dims)
  if dims and dims[name] then return dims[name] end
  if math.type(enc.out_features) == "integer" then return enc.out_features end
  local mods = enc:modules()
  for i = #mods, 1, -1 do
    local d = rawget(mods[i], "out_features") or mods[i].out_features
    if math.type(d) == "integer" then return d end
  end
  error(("fusion.Model: cannot tell the latent size of encoder '%s': give dims = {%s = d}")
    :format(name, name), 3)
end

local Model = nn.Module:extend("FusionModel")
fusion.Model = Model

function Model:init(spec)
  assert(type(spec) == "table", "fusion.Model: give {encoders = {...}, classes = C, ...}")
  local encoders = spec.encoders
  assert(type(encoders) == "table" and next(encoders), "fusion.Model: give encoders = {name = module, ...}")
  local classes = spec.classes
  assert(math.type(classes) == "integer" and classes >= 1, "fusion.Model: classes must be a positive integer")
  local order = spec.order
  if not order then
    order = {}
    for k in pairs(encoders) do order[#order + 1] = k end
    table.sort(order)
  end
  local seen = {}
  for _, name in ipairs(order) do
    assert(nn.is_module(encoders[name]), ("fusion.Model: order names '%s', which has no encoder module"):format(tostring(name)))
    assert(name ~= "fused" and name ~= "fusion", "fusion.Model: 'fused' and 'fusion' are reserved names")
    seen[name] = true
  end
  for k in pairs(encoders) do
    assert(seen[k], ("fusion.Model: encoder '%s' is missing from order"):format(tostring(k)))
  end
  local mode = spec.head_mode or "loss"
  assert(mode == "loss" or mode == "probe", "fusion.Model: head_mode must be 'loss' or 'probe', got " .. tostring(mode))

  self.order = { table.unpack(order) }
  self.classes = classes
  self.head_mode = mode
  self.dims = {}
  self.encoders = Dict()
  self.heads = Dict()
  for _, name in ipairs(order) do
    local d = latent_dim(name, encoders[name], spec.dims)
    self.dims[name] = d
    self.encoders[name] = encoders[name]
    self.heads[name] = nn.Linear(d, classes)
  end

  local f = spec.fusion or "concat"
  self.fusion_kind = type(f) == "string" and f or (type(f) == "function" and "function" or "module")
  if f == "concat" then
    local total = 0
    for _, name in ipairs(order) do total = total + self.dims[name] end
    self.fusion_head = nn.Linear(total, classes)
  elseif f == "sum" then
    local d = self.dims[order[1]]
    for _, name in ipairs(order) do
      if self.dims[name] ~= d then
        error(("fusion.Model: sum fusion needs equal latent sizes, got %s = %d and %s = %d")
          :format(order[1], d, name, self.dims[name]), 2)
      end
    end
    self.fusion_head = nn.Linear(d, classes)
  elseif nn.is_module(f) then
    self.fusion_head = f
  elseif type(f) == "function" then
    self.fusion_fn = f
  else
    error("fusion.Model: fusion must be 'concat', 'sum', a module or a function, got " .. tostring(f), 2)
  end
end

--- forward({name = input, ...}) -> {fused = logits, heads = {name = logits}, latents = {name = z}}.
function Model:forward(inputs)
  local latents, list, heads = {}, {}, {}
  for i, name in ipairs(self.order) do
    local x = inputs[name]
    if x == nil then error(("FusionModel: the input lacks modality '%s'"):format(name), 2) end
    local z = self.encoders[name](x)
    latents[name], list[i] = z, z
    heads[name] = self.heads[name](self.head_mode == "probe" and z:detach() or z)
  end
  local fused
  if self.fusion_kind == "concat" then
    fused = self.fusion_head(#list == 1 and list[1] or core.cat(list, 2))
  elseif self.fusion_kind == "sum" then
    local s = list[1]
    for i = 2, #list do s = s + list[i] end
    fused = self.fusion_head(s)
  elseif self.fusion_kind == "module" then
    fused = self.fusion_head(list)
  else
    fused = self.fusion_fn(list)
  end
  return { fused = fused, heads = heads, latents = latents }
end

--- modality_logits({name = z, ...}) -> {name = logits}: each modality's share of
-- the fused logits, read from the fusion head's own weights (as OGM does). With
-- n modalities and the fused Linear's weight W and bias b:
--   concat: out_i = z_i W_i^T + b/n, W_i the column block of W that reads z_i;
--   sum:    out_i = z_i W^T + b/n.
-- In both cases the shares add up to the fused logits. (The official OGM-GE code's
-- sum fusion has one Linear per modality, each with its own bias; ours has one
-- shared Linear, so its bias is split evenly, as the official concat case does.)
-- A module or function fusion head has no such split: error.
function Model:modality_logits(latents)
  local kind = self.fusion_kind
  if kind ~= "concat" and kind ~= "sum" then
    error(("FusionModel:modality_logits: needs 'concat' or 'sum' fusion, this model's fusion is a %s")
      :format(kind), 2)
  end
  local W, b, n = self.fusion_head.weight, self.fusion_head.bias, #self.order
  local share = b and b / n
  local out, col = {}, 1
  for _, name in ipairs(self.order) do
    local z = latents[name]
    if z == nil then error(("FusionModel:modality_logits: no latent for modality '%s'"):format(name), 2) end
    local d = self.dims[name]
    local Wi = kind == "concat" and W:narrow(2, col, d) or W
    col = col + d
    local logits = z:matmul(Wi:t())
    out[name] = share and logits + share or logits
  end
  return out
end

--- The optimizer's parameter groups: one per modality (encoder + its head), in
-- order, then "fusion" (the fusion head's parameters; empty for a plain function).
function Model:param_groups()
  local groups = {}
  for _, name in ipairs(self.order) do
    local ps = self.encoders[name]:parameters()
    for _, p in ipairs(self.heads[name]:parameters()) do ps[#ps + 1] = p end
    groups[#groups + 1] = { name = name, params = ps }
  end
  groups[#groups + 1] = { name = "fusion", params = self.fusion_head and self.fusion_head:parameters() or {} }
  return groups
end

--- The modules of a parameter group (a modality name or "fusion"), as a list of
-- {state-dict prefix, module}: a modality's encoder and head, or the fusion head.
function Model:group_modules(name)
  if name == "fusion" then
    return self.fusion_head and { { "fusion_head", self.fusion_head } } or {}
  end
  if not self.encoders[name] then
    error(("FusionModel: no group '%s' (groups: %s, fusion)"):format(tostring(name),
      table.concat(self.order, ", ")), 2)
  end
  return { { "encoders." .. name, self.encoders[name] }, { "heads." .. name, self.heads[name] } }
end

function Model:extra_repr()
  return ("order={%s}, classes=%d, fusion=%s, head_mode=%s"):format(table.concat(self.order, ", "),
    self.classes, self.fusion_kind, self.head_mode)
end

return fusion
