-- miles.optim: Adam, AdamW and SGD over parameter groups.
-- The parity specs replay the gradients of spec/fixtures/optim/ (written by
-- spec/fixtures/make_optim_fixtures.py with PyTorch 1.13, foreach=False) and
-- compare the parameters after 100 steps; the unit specs cover the Lua API.
local miles = require "miles"
local optim = require "miles.optim"
local H = require "helpers"
local gpu_it = H.gpu_specs(it, describe, pending)

local FIX = "spec/fixtures/optim/"
local CASES = dofile(FIX .. "cases.lua")
local C = miles.core._optim

-- Assert that fn raises an error whose message contains every given piece.
local function raises(fn, ...)
  local msg = H.error_of(fn)
  for _, piece in ipairs({ ... }) do
    assert(msg:find(piece, 1, true), string.format("error %q lacks %q", msg, piece))
  end
  return msg
end

local function load(name) return miles.load(FIX .. name .. ".npy") end

-- The fixture's starting parameters in a dtype, as fresh leaves.
local function init_params(dtype)
  local a, b = load("init_a"):to(dtype):clone(), load("init_b"):to(dtype):clone()
  a.requires_grad, b.requires_grad = true, true
  return a, b
end

local GRADS = { load("grads_a"), load("grads_b") }

-- Set step t's fixture gradients (1-based) on a and b.
local function set_grads(t, a, b)
  a.grad = GRADS[1][t]:to(a:dtype())
  b.grad = GRADS[2][t]:to(b:dtype())
end

-- Largest |got - want| / |want| over the elements, in float64.
local function max_rel_err(got, want)
  return miles.no_grad(function()
    local g, w = got:to("float64"), want:to("float64")
    return ((g - w):abs() / w:abs():clamp(1e-12, math.huge)):max():item()
  end)
end

-- Replay steps from..to of a single-group case on an optimizer.
local function replay(opt, a, b, from, to)
  for t = from, to do
    set_grads(t, a, b)
    opt:step()
  end
end

-- The relative error allowed against PyTorch: the float64 runs agree to about
-- 1e-14 (the order of operations is PyTorch's); float32 to about 4e-7.
local TOL = { float64 = 1e-12, float32 = 1e-5 }

describe("optim parity with PyTorch 1.13 (100 steps, replayed gradients)", function()
  for _, case in ipairs(CASES.cases) do
    it(case.name .. " (" .. case.optimizer .. ", " .. case.dtype .. ")", function()
      local a, b = init_params(case.dtype)
      local opt = optim[case.optimizer]({ a, b }, case.options)
      replay(opt, a, b, 1, CASES.steps)
      for _, pair in ipairs({ { a, "_a" }, { b, "_b" } }) do
        local err = max_rel_err(pair[1], load(case.name .. pair[2]))
        assert(err <= TOL[case.dtype], ("%s%s: max relative error %.3g"):format(case.name,
          pair[2], err))
      end
      assert.are.equal(CASES.steps, opt.state[a].step)
    end)
  end

  -- Two groups: group 2's lr drops at lr2_from; group 1 frozen in [frozen_from, frozen_to].
  local function two_groups(freeze)
    local s = CASES.two_groups
    local a, b = init_params("float64")
    local opt = optim.Adam({ { name = "g1", params = { a } }, { name = "g2", params = { b } } },
      { lr = s.lr })
    for t = 1, CASES.steps do
      local frozen = t >= s.frozen_from and t <= s.frozen_to
      freeze(opt, frozen)
      if t == s.lr2_from then opt:set_lr("g2", s.lr2) end
      set_grads(t, a, b) -- group 1 has gradients while frozen: the freeze must skip it
      opt:step()
    end
    assert(max_rel_err(a, load("two_groups_a")) <= TOL.float64)
    assert(max_rel_err(b, load("two_groups_b")) <= TOL.float64)
    assert.are.equal(s.steps_a, opt.state[a].step)
    assert.are.equal(s.steps_b, opt.state[b].step)
    assert.are.equal(s.lr2, opt:lr("g2"))
  end

  it("two groups: lr changed at step 50, group 1 frozen by lr = 0 for steps 20-30", function()
    two_groups(function(opt, frozen) opt:group("g1").lr = frozen and 0 or CASES.two_groups.lr end)
  end)

  it("two groups: the same with group.frozen = true", function()
    two_groups(function(opt, frozen) opt:group(1).frozen = frozen end)
  end)
end)

describe("optim state", function()
  it("is visible in opt.state[p] after the first step", function()
    local p = miles.tensor({ 1, -2, 3 }, { dtype = "float64" })
    local g = miles.tensor({ 0.5, 0.25, -1 }, { dtype = "float64" })
    local opt = optim.Adam({ p }, { amsgrad = true })
    assert.is_nil(opt.state[p])
    p.grad = g
    opt:step()
    local st = opt.state[p]
    assert.are.equal(1, st.step)
    H.assert_close(st.exp_avg, g * 0.1, 1e-12, 0, "exp_avg")
    H.assert_close(st.exp_avg_sq, g * g * 0.001, 1e-12, 0, "exp_avg_sq")
    H.assert_close(st.max_exp_avg_sq, st.exp_avg_sq, 0, 0, "max_exp_avg_sq")
    -- The first step of Adam moves each element by about lr against its gradient's sign.
    H.assert_close(p, { 1 - 1e-3, -2 - 1e-3, 3 + 1e-3 }, 1e-6, 0, "p")
    -- the same state through another Lua value holding the same tensor
    assert.are.equal(st, opt.state[p:contiguous()])
  end)

  it("SGD's first momentum buffer is the gradient, as PyTorch's clone", function()
    local p = miles.tensor({ 1, 2 }, { dtype = "float64" })
    local opt = optim.SGD({ p }, { lr = 0.1, momentum = 0.9, weight_decay = 0.5 })
    p.grad = miles.tensor({ 1, -1 }, { dtype = "float64" })
    opt:step()
    H.assert_close(opt.state[p].momentum_buffer, { 1.5, 0 }, 0, 0, "buffer") -- g + wd * p
    H.assert_close(p, { 0.85, 2 }, 1e-15, 0, "p")
    opt:step()
    H.assert_close(opt.state[p].momentum_buffer, { 1.5 * 0.9 + 1.425, 1 * 0.9 * 0 + 0 },
      1e-15, 1e-15, "buffer")
    assert.are.equal(2, opt.state[p].step)
    local plain = optim.SGD({ miles.zeros(2) }, { lr = 0.1 })
    plain.groups[1].params[1].grad = miles.ones(2)
    plain:step()
    assert.is_nil(plain.state[plain.groups[1].params[1]].momentum_buffer)
  end)

  it("skips parameters without a gradient (no state made)", function()
    local p, q = miles.ones(2), miles.ones(3)
    local opt = optim.Adam({ p, q })
    q.grad = miles.ones(3)
    opt:step()
    assert.is_nil(opt.state[p])
    H.assert_close(p, { 1, 1 }, 0, 0)
    assert.are.equal(1, opt.state[q].step)
  end)

  it("round-trips through state_dict / load_state_dict: 50 + 50 steps = 100 steps", function()
    for _, name in ipairs({ "adam_amsgrad", "adamw", "sgd_momentum", "sgd_nesterov" }) do
      local case
      for _, c in ipairs(CASES.cases) do
        if c.name == name then case = c end
      end
      local a, b = init_params("float64")
      local opt = optim[case.optimizer]({ a, b }, case.options)
      replay(opt, a, b, 1, 50)
      local sd = opt:state_dict()
      -- a new optimizer (and new tensors) built the same way takes over
      local a2, b2 = a:detach():clone(), b:detach():clone()
      local opt2 = optim[case.optimizer]({ a2, b2 }, { lr = 123 })
      opt2:load_state_dict(sd)
      assert.are.equal(case.options.lr or 1e-3, opt2:lr())
      replay(opt2, a2, b2, 51, 100)
      assert(max_rel_err(a2, load(name .. "_a")) <= TOL.float64, name)
      assert(max_rel_err(b2, load(name .. "_b")) <= TOL.float64, name)
      assert.are.equal(100, opt2.state[a2].step)
      -- the snapshot did not follow opt2 (nor would it follow opt)
      assert.are.equal(50, sd.state[1].step)
    end
  end)

  it("state_dict is a plain table keyed by parameter number through the groups", function()
    local a, b, c = miles.ones(2), miles.ones(3), miles.ones(4)
    local opt = optim.Adam({ { name = "x", params = { a, b } }, { name = "y", params = { c }, lr = 0.1 } })
    b.grad, c.grad = miles.ones(3), miles.ones(4)
    opt:step()
    local sd = opt:state_dict()
    assert.are.equal("Adam", sd.optimizer)
    assert.are.same({ 1, 2 }, sd.param_groups[1].params)
    assert.are.same({ 3 }, sd.param_groups[2].params)
    assert.are.equal(0.1, sd.param_groups[2].lr)
    assert.are.same({ 0.9, 0.999 }, sd.param_groups[1].betas)
    assert.is_nil(sd.state[1])
    assert.are.equal(1, sd.state[2].step)
    assert.are.same({ 4 }, sd.state[3].exp_avg:shape())
    -- copies: changing the snapshot changes nothing in the optimizer
    sd.state[3].exp_avg:fill_(7)
    sd.param_groups[1].betas[1] = 0.5
    assert(opt.state[c].exp_avg:max():item() < 1)
    assert.are.equal(0.9, opt:group("x").betas[1])
  end)

  it("load_state_dict refuses a state that does not fit, and changes nothing then", function()
    local a, b = miles.ones(2), miles.ones(3)
    local opt = optim.Adam({ { name = "x", params = { a } }, { name = "y", params = { b } } })
    a.grad, b.grad = miles.ones(2), miles.ones(3)
    opt:step()
    local sd = opt:state_dict()
    raises(function() optim.Adam({ a, b }):load_state_dict(sd) end,
      "adam: load_state_dict: the state has 2 parameter groups, the optimizer 1")
    raises(function()
      optim.Adam({ { name = "x", params = { a, miles.ones(1) } }, { name = "y", params = { b } } })
        :load_state_dict(sd)
    end, "group 1 ('x') has 1 parameters in the state but 2 in the optimizer")
    raises(function()
      optim.Adam({ { name = "x", params = { miles.ones(5) } }, { name = "y", params = { b } } })
        :load_state_dict(sd)
    end, "parameter 1 (group 1 ('x'), its parameter 1): exp_avg has shape [2] but the parameter has [5]")
    raises(function()
      optim.Adam({ { name = "y", params = { a } }, { name = "x", params = { b } } }):load_state_dict(sd)
    end, "group 1 is named 'x' in the state but 'y' in the optimizer")
    raises(function() optim.SGD({ { params = { a } }, { params = { b } } }, { lr = 1 }):load_state_dict(sd) end,
      "the state is of Adam, this optimizer is SGD")
    local bad = opt:state_dict()
    bad.param_groups[2].lr = -1
    local before = opt.state[a].exp_avg:clone()
    raises(function() opt:load_state_dict(bad) end, "adam: group 2 ('y'): invalid learning rate -1")
    assert.are.equal(1e-3, opt:lr("y"))
    H.assert_close(opt.state[a].exp_avg, before, 0, 0)
  end)

  it("load_state_dict keeps the group tables and opt.state the same tables", function()
    local a = miles.ones(2)
    local opt = optim.Adam({ { name = "x", params = { a } } })
    local g, state = opt:group("x"), opt.state
    a.grad = miles.ones(2)
    opt:step()
    local sd = opt:state_dict()
    sd.param_groups[1].lr = 0.5
    opt:load_state_dict(sd)
    assert.are.equal(g, opt:group("x"))
    assert.are.equal(state, opt.state)
    assert.are.equal(0.5, g.lr)
    assert.are.equal(1, opt.state[a].step)
  end)
end)

describe("optim groups", function()
  it("are readable and writable between steps", function()
    local p = miles.tensor({ 1, 1 }, { dtype = "float64" })
    local opt = optim.Adam({ { name = "only", params = { p } } })
    local g = opt:group("only")
    assert.are.equal(g, opt:group(1))
    assert.are.equal(g, opt.groups[1])
    assert.are.equal(g, opt.param_groups[1])
    assert.are.same({ 0.9, 0.999 }, g.betas)
    assert.are.equal(1e-8, g.eps)
    g.lr = 0.5
    p.grad = miles.tensor({ 1, -1 }, { dtype = "float64" })
    opt:step()
    H.assert_close(p, { 0.5, 1.5 }, 1e-6, 0, "p after lr 0.5")
    opt:set_lr("only", 0.25)
    assert.are.equal(0.25, opt:lr("only"))
    opt:set_lr(0.125)
    assert.are.equal(0.125, opt:lr())
  end)

  it("each group has its own betas table", function()
    local opt = optim.Adam({ { params = { miles.ones(1) } }, { params = { miles.ones(1) } } })
    opt:group(1).betas[1] = 0.5
    assert.are.equal(0.9, opt:group(2).betas[1])
    assert.are.equal(0.9, opt.defaults.betas[1])
  end)

  it("a frozen group leaves its parameters and their state untouched", function()
    local a, b = miles.randn(4, 3), miles.randn(5)
    local opt = optim.AdamW({ { name = "enc", params = { a } }, { name = "head", params = { b } } },
      { lr = 0.1 })
    for _ = 1, 3 do
      a.grad, b.grad = miles.randn(4, 3), miles.randn(5)
      opt:step()
    end
    for _, how in ipairs({ "frozen", "lr0" }) do
      if how == "frozen" then opt:freeze("enc") else
        opt:unfreeze("enc"); opt:set_lr("enc", 0)
      end
      local a0, m0, v0 = a:clone(), opt.state[a].exp_avg:clone(), opt.state[a].exp_avg_sq:clone()
      local b0 = b:clone()
      a.grad, b.grad = miles.randn(4, 3), miles.randn(5)
      opt:step()
      H.assert_close(a, a0, 0, 0, "frozen parameter")
      H.assert_close(opt.state[a].exp_avg, m0, 0, 0, "frozen exp_avg")
      H.assert_close(opt.state[a].exp_avg_sq, v0, 0, 0, "frozen exp_avg_sq")
      assert.are.equal(3, opt.state[a].step)
      assert(H.max_abs_diff(b, b0) > 0, "the other group moved")
    end
    assert.are.equal(5, opt.state[b].step)
  end)

  it("accept a module, a tensor or a list of tensors as params", function()
    local lin = miles.nn.Linear(3, 2)
    local opt = optim.SGD({ { name = "lin", params = lin }, { params = miles.ones(2) } }, { lr = 0.1 })
    assert.are.equal(2, #opt:group("lin").params)
    assert.are.equal(1, #opt:group(2).params)
    assert.are.equal(2, #optim.Adam(miles.nn.Linear(2, 2)).groups[1].params)
    assert.are.equal(1, #optim.Adam(miles.ones(2)).groups[1].params)
  end)

  it("add_param_group adds a group with the defaults", function()
    local a, b = miles.ones(2), miles.ones(3)
    local opt = optim.SGD({ a }, { lr = 0.1, momentum = 0.9 })
    local g = opt:add_param_group({ name = "late", params = { b }, lr = 0.2 })
    assert.are.equal(g, opt:group("late"))
    assert.are.equal(0.9, g.momentum)
    assert.are.equal(0.2, opt:lr("late"))
    raises(function() opt:add_param_group({ params = { a } }) end,
      "sgd: group 3: parameter 1 is already in group 1 (as its parameter 1)")
    raises(function() opt:add_param_group({ name = "late", params = { miles.ones(1) } }) end,
      "there is already a group named 'late'")
  end)

  it("zero_grad sets gradients to nil, or zero with zero_grad(false)", function()
    local a, b = miles.ones(2), miles.ones(3)
    local opt = optim.Adam({ { params = { a } }, { params = { b } } })
    a.grad, b.grad = miles.ones(2), miles.ones(3)
    local ga = a.grad
    opt:zero_grad(false)
    H.assert_close(ga, { 0, 0 }, 0, 0)
    opt:zero_grad()
    assert.is_nil(a.grad)
    assert.is_nil(b.grad)
  end)

  it("the step returns the closure's loss", function()
    local p = miles.ones(1)
    local opt = optim.SGD({ p }, { lr = 1 })
    local loss = opt:step(function() p.grad = miles.ones(1); return 42 end)
    assert.are.equal(42, loss)
    H.assert_close(p, { 0 }, 0, 0)
  end)

  it("print one line per group", function()
    local opt = optim.Adam({ { name = "audio", params = { miles.ones(3) } } })
    local s = tostring(opt)
    assert(s:find("Adam (1 group)", 1, true) and s:find("group 1 ('audio'): 1 tensors (3 values)", 1, true), s)
  end)
end)

describe("optim on large tensors", function()
  -- More elements than one thread takes, not a multiple of the block or the chunk size.
  local N = 100003

  -- Adam in tensor ops, the formula of PyTorch's single-tensor code.
  local function adam_reference(p, g, m, v, step, lr, b1, b2, eps, wd)
    g = g + p * wd
    m = m * b1 + g * (1 - b1)
    v = v * b2 + g * g * (1 - b2)
    local denom = v:sqrt() / math.sqrt(1 - b2 ^ step) + eps
    return p - m / denom * (lr / (1 - b1 ^ step)), m, v
  end

  it("matches the formula and gives the same bits on 1 and 2 threads", function()
    local threads = miles.get_num_threads()
    local p0, g1, g2 = miles.randn(N, { dtype = "float64" }), miles.randn(N, { dtype = "float64" }),
        miles.randn(N, { dtype = "float64" })
    local results = {}
    for _, nt in ipairs({ 1, 2 }) do
      miles.set_num_threads(nt)
      local p = p0:clone()
      local opt = optim.Adam({ p }, { lr = 0.01, weight_decay = 0.1 })
      for _, g in ipairs({ g1, g2 }) do
        p.grad = g
        opt:step()
      end
      results[nt] = p
    end
    miles.set_num_threads(threads)
    H.assert_close(results[2], results[1], 0, 0, "1 vs 2 threads")
    local p, m, v = p0, miles.zeros(N, { dtype = "float64" }), miles.zeros(N, { dtype = "float64" })
    for step, g in ipairs({ g1, g2 }) do
      p, m, v = adam_reference(p, g, m, v, step, 0.01, 0.9, 0.999, 1e-8, 0.1)
    end
    assert(max_rel_err(results[1], p) < 1e-12)
  end)

  it("SGD in float32 matches the formula", function()
    local p0, g = miles.randn(N), miles.randn(N)
    local p = p0:clone()
    local opt = optim.SGD({ p }, { lr = 0.1, momentum = 0.9, nesterov = true })
    p.grad = g
    opt:step()
    opt:step()
    -- buf1 = g; p1 = p0 - lr (g + 0.9 g); buf2 = 0.9 g + g; p2 = p1 - lr (g + 0.9 buf2)
    local want = p0 - g * (0.1 * 1.9) - (g + g * 1.9 * 0.9) * 0.1
    H.assert_close(p, want, 1e-5, 1e-6, "p")
  end)
end)

describe("optim errors", function()
  it("name the bad hyper-parameter and its value", function()
    local p = miles.ones(2)
    raises(function() optim.Adam({ p }, { lr = -1 }) end, "adam: group 1: invalid learning rate -1 (must be >= 0)")
    raises(function() optim.Adam({ p }, { betas = { 0.9, 1 } }) end, "adam: group 1: invalid beta2 1 (must be in [0, 1))")
    raises(function() optim.AdamW({ p }, { betas = { -0.1, 0.9 } }) end, "adamw: group 1: invalid beta1 -0.1")
    raises(function() optim.Adam({ p }, { eps = -1e-8 }) end, "invalid eps -1e-08")
    raises(function() optim.Adam({ p }, { weight_decay = -1 }) end, "invalid weight_decay -1")
    raises(function() optim.Adam({ p }, { betas = 0.9 }) end, "'betas' must be a table of two numbers")
    raises(function() optim.Adam({ p }, { lr = "fast" }) end, "adam: 'lr' must be a number, got string")
    raises(function() optim.SGD({ p }, { lr = 0.1, momentum = -0.5 }) end, "sgd: group 1: invalid momentum -0.5")
    raises(function() optim.SGD({ p }, { lr = 0.1, nesterov = true }) end,
      "nesterov needs momentum > 0 and dampening 0 (got momentum 0, dampening 0)")
    raises(function() optim.SGD({ p }, { lr = 0.1, momentum = 0.9, dampening = 0.1, nesterov = true }) end,
      "nesterov needs momentum > 0 and dampening 0 (got momentum 0.9, dampening 0.1)")
    raises(function() optim.SGD({ p }) end, "sgd: group 1 has no lr (SGD has no default learning rate)")
    raises(function() optim.Adam({ p }, { learning_rate = 1 }) end, "adam: unknown option 'learning_rate'")
  end)

  it("a value made invalid between steps stops the step before anything moves", function()
    local a, b = miles.ones(2), miles.ones(2)
    local opt = optim.Adam({ { name = "ok", params = { a } }, { name = "bad", params = { b } } })
    opt:group("bad").betas = { 0.9, 1.5 }
    a.grad, b.grad = miles.ones(2), miles.ones(2)
    raises(function() opt:step() end, "adam: group 2 ('bad'): invalid beta2 1.5")
    H.assert_close(a, { 1, 1 }, 0, 0)
    assert.is_nil(opt.state[a])
    raises(function() opt:set_lr("ok", -2) end, "invalid learning rate -2")
    raises(function() opt:group("nope") end, "adam: no group named 'nope' (groups: ok, bad)")
    raises(function() opt:group(3) end, "adam: no group 3 (there are 2)")
  end)

  it("refuse a parameter twice, a non-float, a non-leaf or a non-contiguous tensor", function()
    local p = miles.ones(2)
    raises(function() optim.Adam({ { params = { p } }, { name = "b", params = { p } } }) end,
      "adam: group 2 ('b'): parameter 1 is already in group 1 (as its parameter 1)")
    raises(function() optim.Adam({ p, p:contiguous() }) end, "parameter 2 is the same tensor as its parameter 1")
    raises(function() optim.Adam({ miles.ones(2, { dtype = "int64" }) }) end,
      "parameter 1 is int64; only float32 and float64 tensors can be optimized")
    local x = miles.ones(2, { requires_grad = true })
    raises(function() optim.Adam({ x * 2 }) end, "parameter 1 is not a leaf (it comes from mul)")
    raises(function() optim.Adam({ miles.ones(2, 3):t() }) end, "parameter 1 is not contiguous")
    raises(function() optim.Adam({ 3 }) end, "parameter 1 is a number, not a tensor")
    raises(function() optim.Adam({}) end, "adam: got an empty parameter list")
    raises(function() optim.SGD({ { params = {} } }, { lr = 1 }) end, "sgd: got an empty parameter list")
  end)

  it("a non-contiguous gradient is used as its contiguous copy", function()
    local p, q = miles.ones(3, 3), miles.ones(3, 3)
    local g = miles.randn(3, 3)
    local o1, o2 = optim.Adam({ p }), optim.Adam({ q })
    p.grad, q.grad = g:t(), g:t():contiguous()
    o1:step()
    o2:step()
    H.assert_close(p, q, 0, 0)
  end)

  it("the kernels check their tensors (called directly)", function()
    local hp = { lr = 0.1, betas = { 0.9, 0.99 }, eps = 1e-8, weight_decay = 0 }
    local p = miles.ones(3)
    raises(function() C.adam_step(p, miles.ones(3), miles.zeros(2), miles.zeros(3), nil, 1, hp) end,
      "adam: exp_avg has shape [2] but the parameter has [3]")
    raises(function() C.adam_step(p, miles.ones(3), miles.zeros(3, { dtype = "float64" }), miles.zeros(3), nil, 1, hp) end,
      "adam: exp_avg is float64 but the parameter is float32")
    raises(function() C.adamw_step(p, miles.ones(3), p, miles.zeros(3), nil, 1, hp) end,
      "adamw: the parameter and exp_avg share memory")
    raises(function() C.adam_step(p, miles.ones(3), miles.zeros(3), miles.zeros(3), nil, 0, hp) end,
      "adam: step must be >= 1")
    hp.amsgrad = true
    raises(function() C.adam_step(p, miles.ones(3), miles.zeros(3), miles.zeros(3), nil, 1, hp) end,
      "adam: max_exp_avg_sq (amsgrad) is missing")
    local m = miles.zeros(3, 2)
    raises(function() C.adam_step(miles.ones(2, 3), miles.ones(2, 3), m:t(), miles.zeros(2, 3), miles.zeros(2, 3), 1, hp) end,
      "adam: exp_avg must be contiguous")
    raises(function() C.sgd_step(miles.ones(2, 3):t(), miles.ones(3, 2), nil, false, { lr = 1, momentum = 0, dampening = 0, weight_decay = 0 }) end,
      "sgd: the parameter must be contiguous")
    raises(function() C.sgd_step(p, miles.ones(3), nil, true, { lr = 1, momentum = 0.5, dampening = 0, weight_decay = 0 }) end,
      "sgd: momentum_buffer is missing")
    raises(function() C.check("rmsprop", hp) end, "invalid option 'rmsprop'")
  end)

  gpu_it("cuda parameters: the cpu's bits, one fused launch per group #gpu", function()
    for _, case in ipairs(CASES.cases) do
      local a, b = init_params(case.dtype)
      local ca, cb = a:detach():clone():cuda(), b:detach():clone():cuda()
      ca.requires_grad, cb.requires_grad = true, true
      local opt = optim[case.optimizer]({ a, b }, case.options)
      local copt = optim[case.optimizer]({ ca, cb }, case.options)
      for t = 1, CASES.steps do
        set_grads(t, a, b)
        ca.grad, cb.grad = a.grad:cuda(), b.grad:cuda()
        opt:step()
        copt:step()
        if t == 50 then -- a snapshot moved to the cpu, restored onto the GPU parameters
          local sd = copt:state_dict()
          for _, st in pairs(sd.state) do
            for k, v in pairs(st) do
              if miles.is_tensor(v) then st[k] = v:cpu() end
            end
          end
          copt = optim[case.optimizer]({ ca, cb }, case.options)
          copt:load_state_dict(sd)
        end
      end
      H.assert_close(ca:cpu(), a, 0, 0, case.name .. " a")
      H.assert_close(cb:cpu(), b, 0, 0, case.name .. " b")
      for k, v in pairs(opt.state[a]) do
        if miles.is_tensor(v) then
          H.assert_close(copt.state[ca][k]:cpu(), v, 0, 0, case.name .. " " .. k)
        end
      end
      assert.are.equal(CASES.steps, copt.state[ca].step)
    end
    -- a state tensor on another device is refused before anything is written
    local p = miles.ones(3, { device = "cuda" })
    local hp = { lr = 0.1, betas = { 0.9, 0.99 }, eps = 1e-8, weight_decay = 0 }
    raises(function()
      C.adam_step(p, miles.ones(3, { device = "cuda" }), miles.zeros(3),
        miles.zeros(3, { device = "cuda" }), nil, 1, hp)
    end, "adam: exp_avg is on cpu but the parameter is on cuda:0")
    H.assert_close(p:cpu(), { 1, 1, 1 }, 0, 0)
  end)
end)
