-- The demo (`make demo`). Until the trainer and the embedded data set land, it
-- shows the core at work on a synthetic two-modality problem: two small MLP
-- encoders (a "fast" modality with a clean signal, a "slow" one with a noisy
-- signal), concat fusion, the loss of the paper's Eq. 3 (fused + one head per
-- modality), plain SGD written with autograd. It prints each head's accuracy per
-- epoch, so the imbalance between modalities is visible.
local miles = require "miles"
local F = miles.F

miles.manual_seed(tonumber(arg and arg[1]) or 0)
local N, C, D, H = 2048, 4, 16, 32
local epochs, lr, batch = 8, 0.1, 64

-- Data: class c has mean vector mu[c] in each modality; B is much noisier.
local y = miles.randint(1, C + 1, { N })
local mu_a, mu_b = miles.randn(C, D), miles.randn(C, D)
local a = mu_a:index_select(1, y) + miles.randn(N, D) * 0.8
local b = mu_b:index_select(1, y) + miles.randn(N, D) * 2.5

local function linear(i, o)
  local bound = 1 / math.sqrt(i)
  local w = (miles.rand(o, i) * 2 - 1) * bound
  local bias = (miles.rand(o) * 2 - 1) * bound
  w.requires_grad, bias.requires_grad = true, true
  return { w = w, b = bias }
end

local enc_a, enc_b = linear(D, H), linear(D, H)
local head_a, head_b, head_ab = linear(H, C), linear(H, C), linear(2 * H, C)
local params = {}
for _, l in ipairs({ enc_a, enc_b, head_a, head_b, head_ab }) do
  params[#params + 1], params[#params + 2] = l.w, l.b
end

local function forward(xa, xb)
  local za = F.linear(xa, enc_a.w, enc_a.b):relu()
  local zb = F.linear(xb, enc_b.w, enc_b.b):relu()
  local fused = F.linear(miles.cat({ za, zb }, 2), head_ab.w, head_ab.b)
  return fused, F.linear(za, head_a.w, head_a.b), F.linear(zb, head_b.w, head_b.b)
end

local function accuracy(logits, target)
  return logits:argmax(2):eq(target):to("float32"):mean():item()
end

print(string.format("%-6s %8s %8s %8s %8s", "epoch", "loss", "fused", "A", "B"))
for epoch = 1, epochs do
  local perm = miles.randperm(N)
  local total, steps = 0, 0
  for start = 1, N, batch do
    local idx = perm:narrow(1, start, math.min(batch, N - start + 1))
    local xa, xb, yt = a:index_select(1, idx), b:index_select(1, idx), y:index_select(1, idx)
    local fused, la, lb = forward(xa, xb)
    local loss = F.cross_entropy(fused, yt) + F.cross_entropy(la, yt) + F.cross_entropy(lb, yt)
    loss:backward()
    miles.no_grad(function()
      for _, p in ipairs(params) do
        p:sub_(p.grad * lr)
        p.grad = nil
      end
    end)
    total, steps = total + loss:item(), steps + 1
  end
  local fused, la, lb = miles.no_grad(forward, a, b)
  print(string.format("%-6d %8.4f %8.3f %8.3f %8.3f", epoch, total / steps,
    accuracy(fused, y), accuracy(la, y), accuracy(lb, y)))
end
