-- Every differentiable op against PyTorch: the forward output and the gradients of
-- sum(out * w) for a stored random w, in float64 (tight tolerances) and in float32
-- (the same inputs rounded to float32, float32 tolerances).
-- The fixtures come from spec/fixtures/make_torch_fixtures.py (torch 1.13, CPU);
-- spec/fixtures/torch/manifest.txt lists the cases, each defined below in miles.
-- Class targets are stored 0-based by torch; they are loaded here as 1-based.
local miles = require "miles"
local H = require "helpers"
local _, gpu_describe = H.gpu_specs(it, describe, pending)
local F = miles.F

local DIR = "torch/"

-- float64: elementwise results differ from PyTorch's by an ulp or two at most;
-- sums, products of matrices and losses by a few ulps of the largest term.
local TOL64 = { exact = { 1e-13, 1e-15 }, sum = { 1e-10, 1e-13 } }
-- float32: the inputs are rounded to float32 first, so the error grows with the
-- op's condition number; compared with the float64 reference.
local TOL32 = { exact = { 2e-5, 1e-6 }, sum = { 1e-4, 1e-5 } }

--- The cases of the manifest, in order: {name=, inputs={...}, grads={...}}.
local function read_manifest()
  local cases = {}
  for line in io.lines(H.fixtures .. DIR .. "manifest.txt") do
    local name, ins, gs = line:match("^(%S+) inputs=(%S*) grads=(%S*)$")
    assert(name, "manifest: bad line " .. line)
    local c = { name = name, inputs = {}, grads = {} }
    for k in ins:gmatch("[^,]+") do c.inputs[#c.inputs + 1] = k end
    for k in gs:gmatch("[^,]+") do c.grads[#c.grads + 1] = k end
    cases[#cases + 1] = c
  end
  return cases
end

local function fixture(name)
  return H.fixture(DIR .. name)
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- The miles definition of each case: fn(I) gets the inputs by name and returns
-- the output (and, for max/min along a dim, the indices). `sum` marks results
-- whose summation order differs from PyTorch's.
local defs = {}
local function def(name, fn, kind)
  assert(not defs[name], "defined twice: " .. name)
  defs[name] = { fn = fn, kind = kind or "exact" }
end

-- unary
def("neg", function(I) return -I.x end)
def("abs", function(I) return I.x:abs() end)
def("exp", function(I) return I.x:exp() end)
def("log", function(I) return I.x:log() end)
def("sqrt", function(I) return I.x:sqrt() end)
def("rsqrt", function(I) return I.x:rsqrt() end)
def("reciprocal", function(I) return I.x:reciprocal() end)
def("square", function(I) return I.x:square() end)
def("relu", function(I) return F.relu(I.x) end)
def("sigmoid", function(I) return I.x:sigmoid() end)
def("tanh", function(I) return I.x:tanh() end)
def("sign", function(I) return I.x:sign() end)
def("softplus", function(I) return F.softplus(I.x) end)
def("clamp", function(I) return I.x:clamp(-0.5, 0.5) end)
def("clamp_min", function(I) return I.x:clamp(-0.3) end)
def("clamp_max", function(I) return I.x:clamp(nil, 0.3) end)
def("pow2", function(I) return I.x ^ 2 end)
def("pow3", function(I) return I.x:pow(3) end)
def("pow_frac", function(I) return I.x ^ 2.5 end)
def("pow_negfrac", function(I) return I.x ^ -1.5 end)
def("pow0", function(I) return I.x ^ 0 end)
def("rpow", function(I) return 2.0 ^ I.x end)

-- with a Lua number on either side
def("add_s", function(I) return I.x + 2.5 end)
def("s_add", function(I) return 2.5 + I.x end)
def("sub_s", function(I) return I.x - 2.5 end)
def("s_sub", function(I) return 2.5 - I.x end)
def("mul_s", function(I) return I.x * 2.5 end)
def("s_mul", function(I) return 2.5 * I.x end)
def("div_s", function(I) return I.x / 2.5 end)
def("s_div", function(I) return 2.5 / I.x end)
def("add_alpha", function(I) return miles.add(I.x, I.y, 0.5) end)

-- binary, same shape and broadcast [3,1,4] with [2,4]
for _, tag in ipairs({ "same", "bcast" }) do
  def("add_" .. tag, function(I) return I.x + I.y end)
  def("sub_" .. tag, function(I) return I.x - I.y end)
  def("mul_" .. tag, function(I) return I.x * I.y end)
  def("div_" .. tag, function(I) return I.x / I.y end)
  def("pow_" .. tag, function(I) return I.x ^ I.y end)
  def("maximum_" .. tag, function(I) return miles.maximum(I.x, I.y) end)
  def("minimum_" .. tag, function(I) return I.x:minimum(I.y) end)
end
def("maximum_tie", function(I) return miles.maximum(I.x, I.y) end)
def("minimum_tie", function(I) return miles.minimum(I.x, I.y) end)

def("where", function(I) return miles.where(I.c, I.x, I.y) end)
def("where_bcast", function(I) return miles.where(I.c, I.x, I.y) end)
def("where_s", function(I) return miles.where(I.c, I.x, 0.0) end)
for _, op in ipairs({ "eq", "ne", "lt", "le", "gt", "ge" }) do
  def("cmp_" .. op, function(I) return I.x[op](I.x, I.y) end)
end

-- reductions: all dims, the second dim, the last, dims 1 and 3 with keepdim
local forms = {
  all = function(x, f) return f(x) end,
  d1 = function(x, f) return f(x, 2) end,
  dlast = function(x, f) return f(x, -1) end,
  d02k = function(x, f) return f(x, { 1, 3 }, true) end,
}
for _, op in ipairs({ "sum", "mean", "prod", "amax", "amin", "logsumexp" }) do
  for tag, form in pairs(forms) do
    def(op .. "_" .. tag, function(I)
      return form(I.x, function(x, ...) return x[op](x, ...) end)
    end, "sum")
  end
end
def("prod_zero_all", function(I) return I.x:prod() end, "sum")
def("prod_zero_dlast", function(I) return I.x:prod(-1) end, "sum")
def("prod_zero2_all", function(I) return I.x:prod() end, "sum")
def("amax_tie_all", function(I) return I.x:amax() end)
def("amax_tie_dlast", function(I) return I.x:amax(-1) end)
def("amin_tie_d1", function(I) return I.x:amin(2) end)
def("max_tie_all", function(I) return I.x:max() end)
def("max_tie_dlast", function(I) return I.x:max(-1) end)

-- var and std, with the correction given both ways
for _, op in ipairs({ "var", "std" }) do
  def(op .. "0_all", function(I) return I.x[op](I.x, nil, { correction = 0 }) end, "sum")
  def(op .. "1_all", function(I) return I.x[op](I.x) end, "sum")
  def(op .. "0_d1", function(I) return I.x[op](I.x, 2, { unbiased = false }) end, "sum")
  def(op .. "1_d1", function(I) return I.x[op](I.x, 2, { unbiased = true }) end, "sum")
  def(op .. "0_d02k", function(I)
    return I.x[op](I.x, { 1, 3 }, { keepdim = true, correction = 0 })
  end, "sum")
  def(op .. "1_d02k", function(I) return I.x[op](I.x, { 1, 3 }, { keepdim = true }) end, "sum")
end

def("max_d1", function(I) return I.x:max(2) end)
def("min_d1", function(I) return I.x:min(2) end)
def("max_dlast_k", function(I) return I.x:max(-1, true) end)
def("min_d0_k", function(I) return I.x:min(1, { keepdim = true }) end)

for _, tag in ipairs({ "dot", "vm", "mv", "bcast", "b_m", "m_b", "v_b", "b_v" }) do
  def("matmul_" .. tag, function(I) return miles.matmul(I.x, I.y) end, "sum")
end
def("matmul_mm", function(I) return I.x:mm(I.y) end, "sum")
def("matmul_bmm", function(I) return I.x:bmm(I.y) end, "sum")
def("linear_bias", function(I) return F.linear(I.x, I.weight, I.bias) end, "sum")
def("linear_nobias", function(I) return F.linear(I.x, I.weight) end, "sum")
def("linear_1d", function(I) return miles.linear(I.x, I.weight, I.bias) end, "sum")

for d = 0, 2 do
  def("softmax_d" .. d, function(I) return F.softmax(I.x, d + 1) end, "sum")
  def("log_softmax_d" .. d, function(I) return F.log_softmax(I.x, d + 1) end, "sum")
end

-- losses; torch's ignore_index 1 is class 2 here
local function ce(opts)
  return function(I)
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.weight = I.weight
    return F.cross_entropy(I.x, I.y, o)
  end
end
local function nll(opts)
  return function(I)
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.weight = I.weight
    return F.nll_loss(I.x, I.y, o)
  end
end
for _, r in ipairs({ "mean", "sum", "none" }) do
  def("ce_" .. r, ce({ reduction = r }), "sum")
  def("ce_weight_" .. r, ce({ reduction = r }), "sum")
  def("ce_ls_" .. r, ce({ reduction = r, label_smoothing = 0.1 }), "sum")
  def("ce_ls_weight_" .. r, ce({ reduction = r, label_smoothing = 0.2 }), "sum")
  def("ce_ignore_" .. r, ce({ reduction = r, ignore_index = 2 }), "sum")
  def("ce_ignore_ls_weight_" .. r, ce({ reduction = r, ignore_index = 2, label_smoothing = 0.1 }), "sum")
  def("ce_prob_" .. r, ce({ reduction = r }), "sum")
  def("nll_" .. r, nll({ reduction = r }), "sum")
  def("nll_ignore_weight_" .. r, nll({ reduction = r, ignore_index = 2 }), "sum")
  def("bce_" .. r, function(I)
    return F.binary_cross_entropy_with_logits(I.x, I.y, { reduction = r })
  end, "sum")
  def("mse_" .. r, function(I) return F.mse_loss(I.x, I.y, { reduction = r }) end, "sum")
end
def("ce_ignore_weight_mean", ce({ ignore_index = 2 }), "sum")
def("ce_prob_weight", ce({}), "sum")
def("ce_prob_ls", ce({ label_smoothing = 0.1 }), "sum")
def("ce_3d", ce({}), "sum")
def("ce_3d_none", ce({ reduction = "none" }), "sum")
def("ce_3d_all", ce({ ignore_index = 2, label_smoothing = 0.1 }), "sum")
def("ce_3d_prob", ce({}), "sum")
def("nll_3d", nll({}), "sum")
def("nll_3d_weight_sum", nll({ reduction = "sum" }), "sum")
def("ce_1d", ce({}), "sum")
def("bce_weight", function(I)
  return F.binary_cross_entropy_with_logits(I.x, I.y, { weight = I.weight })
end, "sum")
def("bce_posw", function(I)
  return F.binary_cross_entropy_with_logits(I.x, I.y, { pos_weight = I.pos_weight })
end, "sum")
def("bce_weight_posw_sum", function(I)
  return F.binary_cross_entropy_with_logits(I.x, I.y,
    { weight = I.weight, pos_weight = I.pos_weight, reduction = "sum" })
end, "sum")

--- t's values in a tensor whose elements are two apart in memory (a view of
-- a stack), so that ops meet strided inputs.
local function strided(t)
  if t:dim() == 0 then return t end
  return miles.stack({ t, t }, -1):select(-1, 1):detach()
end

--- The inputs of a case (float ones in dtype dt, on `device`, strided when
-- asked; int64 targets made 1-based), with requires_grad on those whose gradient
-- is checked.
local function load_inputs(c, dt, layout, device)
  local I = {}
  for _, k in ipairs(c.inputs) do
    local t = fixture(c.name .. "_" .. k)
    if t:dtype() == "int64" then
      t = t + 1
    elseif t:dtype() == "float64" and dt ~= "float64" then
      t = t:to(dt)
    end
    t = t:to(device)
    if layout == "strided" and t:dtype() == dt then
      t = strided(t)
      assert(t:dim() == 0 or not t:is_contiguous())
    end
    I[k] = t
  end
  for _, k in ipairs(c.grads) do
    I[k].requires_grad = true
  end
  return I
end

--- Compare an output with its reference: exactly for bool and int64 (indices,
-- stored 0-based), within tol for floats.
local function check_output(got, ref, tol, what)
  got = got:cpu()
  if ref:dtype() == "int64" then
    ref = ref + 1
  end
  if ref:dtype() == "bool" or ref:dtype() == "int64" then
    assert.are.equal(ref:dtype(), got:dtype(), what .. " dtype")
    H.assert_close(got:to("float64"), ref:to("float64"), 0, 0, what)
  else
    H.assert_close(got, ref, tol[1], tol[2], what)
  end
end

local function run_case(c, dt, layout, device)
  local d = assert(defs[c.name], "no miles definition for fixture case " .. c.name)
  local tol = (dt == "float64" and TOL64 or TOL32)[d.kind]
  local I = load_inputs(c, dt, layout, device or "cpu")
  local out, out2 = d.fn(I)
  local ref = fixture(c.name .. "_out")
  if ref:dtype() == "float64" then
    assert.are.equal(dt, out:dtype(), c.name .. ": output dtype")
  end
  check_output(out, ref, tol, c.name .. " output")
  if out2 or file_exists(H.fixtures .. DIR .. c.name .. "_out2.npy") then
    check_output(out2, fixture(c.name .. "_out2"), tol, c.name .. " second output")
  end
  if #c.grads == 0 then
    assert.is_false(out.requires_grad)
    return
  end
  local w = fixture(c.name .. "_w"):to(dt):to(device or "cpu")
  local objective = (out * w):sum()
  objective:backward()
  for _, k in ipairs(c.grads) do
    local g = I[k].grad
    assert(g, c.name .. ": input " .. k .. " got no gradient")
    assert.are.equal(dt, g:dtype(), c.name .. ": gradient dtype of " .. k)
    H.assert_close(g:cpu(), fixture(c.name .. "_g" .. k), tol[1], tol[2], c.name .. " gradient of " .. k)
  end
end

local cases = read_manifest()

describe("ops against PyTorch", function()
  it("has a miles definition for every fixture case and a fixture for every definition", function()
    local seen = {}
    for _, c in ipairs(cases) do
      assert(defs[c.name], "no miles definition for fixture case " .. c.name)
      seen[c.name] = true
    end
    for name in pairs(defs) do
      assert(seen[name], "no fixture for the miles case " .. name)
    end
    assert.is_true(#cases >= 150)
  end)

  for _, mode in ipairs({ { "float64" }, { "float32" }, { "float64", "strided" } }) do
    describe(table.concat(mode, " "), function()
      for _, c in ipairs(cases) do
        it(c.name, function() run_case(c, mode[1], mode[2]) end)
      end
    end)
  end

  -- The same cases on the GPU against the same PyTorch numbers (TF32 off: float32
  -- maths). Without a GPU each mode shows as one skipped block.
  for _, mode in ipairs({ { "float64" }, { "float32" }, { "float64", "strided" } }) do
    gpu_describe("cuda " .. table.concat(mode, " ") .. " #gpu", function()
      local tf32
      setup(function() tf32 = miles.cuda.allow_tf32(); miles.cuda.allow_tf32(false) end)
      teardown(function() miles.cuda.allow_tf32(tf32) end)
      for _, c in ipairs(cases) do
        it(c.name, function() run_case(c, mode[1], mode[2], "cuda") end)
      end
    end)
  end
end)
