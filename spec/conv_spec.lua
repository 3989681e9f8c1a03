-- conv2d and batch_norm against PyTorch fixtures (spec/fixtures/make_conv_fixtures.py)
-- in float64 and float32, and against finite differences.
local miles = require "miles"
local H = require "helpers"
local _, gpu_describe = H.gpu_specs(it, describe, pending)
local F = miles.F

local function load(case, name)
  return H.fixture("conv/" .. case .. "_" .. name)
end

local function exists(case, name)
  local f = io.open(H.fixtures .. "conv/" .. case .. "_" .. name .. ".npy", "rb")
  if f then f:close() end
  return f ~= nil
end

local function leaf(t, dtype, device)
  local l = t:to(dtype):to(device or "cpu")
  if l == t then l = t:clone() end
  l.requires_grad = true
  return l
end

-- Fixture cases run on the cpu, and on the GPU when there is one (with TF32 off:
-- float32 maths); without a GPU the GPU block shows as one skipped entry.
local function on_devices(name, body)
  body("cpu", it)
  gpu_describe(name .. " on cuda #gpu", function()
    local tf32
    setup(function() tf32 = miles.cuda.allow_tf32(); miles.cuda.allow_tf32(false) end)
    teardown(function() miles.cuda.allow_tf32(tf32) end)
    body("cuda", it)
  end)
end

local conv_cases = {
  conv_basic = {},
  conv_stride_pad = { stride = 2, padding = 1 },
  conv_asym = { stride = { 2, 1 }, padding = { 1, 0 } },
  conv_dilation = { dilation = 2, padding = 2 },
  conv_groups = { groups = 2, padding = 1 },
  conv_1x1 = { stride = 2 },
  conv_7x7s2 = { stride = 2, padding = 3 },
  conv_point_1x1in = { padding = 1 },
  conv_point_2x2s2 = { stride = 2, padding = 1 },
  conv_point_dil = { dilation = { 2, 1 }, padding = { 2, 0 } },
}

describe("conv2d", function()
  -- relu = true: the relu fused into the convolution (cuDNN's pointwise op on a
  -- GPU when an engine takes it): relu(conv2d(...)), its values and gradients.
  on_devices("conv2d with relu = true", function(dev, it)
    for _, dtype in ipairs({ "float64", "float32", "bfloat16" }) do
      for _, o in ipairs({ { padding = 1 }, { stride = 2, groups = 2 } }) do
        it(("gives relu(conv2d), values and gradients (%s, %s)"):format(dtype, o.stride and
          "strided, grouped, no bias" or "bias"), function()
          miles.manual_seed(41)
          local x0, w0 = miles.randn(2, 4, 7, 6):to(dtype), miles.randn(6, 4 / (o.groups or 1), 3, 3):to(dtype)
          local b0 = not o.stride and miles.randn(6):to(dtype) or nil
          local function run(relu)
            local x, w = leaf(x0, dtype, dev), leaf(w0, dtype, dev)
            local b = b0 and leaf(b0, dtype, dev) or nil
            local opts = { stride = o.stride, padding = o.padding, groups = o.groups, relu = relu or nil }
            local y = F.conv2d(x, w, b, opts)
            if not relu then y = F.relu(y) end
            miles.manual_seed(42)
            local g = miles.randn(table.unpack(y:shape())):to(dtype):to(dev)
            local loss = (y * g):sum()
            loss:backward()
            return { y, x.grad, w.grad, b and b.grad }
          end
          local fused, apart = run(true), run(false)
          -- the same kernels but the relu's place: equal, but for a GPU's
          -- fused epilogue rounding (bf16: its intermediate stays float32)
          local tol = dev == "cpu" and 0 or dtype == "bfloat16" and 2 ^ -7 or 1e-6
          for i = 1, 4 do
            if apart[i] then
              assert.equal(apart[i]:dtype(), fused[i]:dtype())
              H.assert_close(fused[i]:cpu(), apart[i]:cpu(), tol, tol, "result " .. i)
            end
          end
          assert.is_true(fused[1]:cpu():to("float64"):min():item() >= 0)
        end)
      end
    end
  end)

  it("refuses an unknown option and a relu that is not a boolean", function()
    local x, w = miles.randn(1, 2, 5, 5), miles.randn(3, 2, 3, 3)
    H.raises(function() F.conv2d(x, w, nil, { reul = true }) end, "conv2d: unknown option 'reul'")
    H.raises(function() F.conv2d(x, w, nil, { relu = 1 }) end,
      "conv2d: option 'relu' must be a boolean, got number")
  end)

  on_devices("conv2d fixtures", function(dev, it)
    for case, opts in pairs(conv_cases) do
      for _, dtype in ipairs({ "float64", "float32" }) do
        local tol = dtype == "float64" and 1e-10 or 2e-4
        it(case .. " matches PyTorch (" .. dtype .. ")", function()
          local x, w = leaf(load(case, "x"), dtype, dev), leaf(load(case, "w"), dtype, dev)
          local b = exists(case, "b") and leaf(load(case, "b"), dtype, dev) or nil
          local y = F.conv2d(x, w, b, opts)
          H.assert_close(y:cpu(), load(case, "out"), tol, tol, "output")
          local loss = (y * load(case, "proj"):to(dtype):to(dev)):sum()
          loss:backward()
          H.assert_close(x.grad:cpu(), load(case, "gx"), tol, tol, "grad input")
          H.assert_close(w.grad:cpu(), load(case, "gw"), tol, tol, "grad weight")
          if b then H.assert_close(b.grad:cpu(), load(case, "gb"), tol, tol, "grad bias") end
        end)
      end
    end
  end)

  it("takes stride, padding, dilation and groups positionally", function()
    local x, w = miles.randn(1, 4, 6, 6), miles.randn(2, 2, 3, 3)
    local a = F.conv2d(x, w, nil, 2, 1, 1, 2)
    local b = F.conv2d(x, w, nil, { stride = 2, padding = 1, groups = 2 })
    H.assert_close(a, b, 0, 0)
    assert.same({ 1, 2, 3, 3 }, a:shape())
  end)

  it("passes a gradient check in float64", function()
    local x, w, b = H.leaf(1, 2, 5, 4), H.leaf(3, 2, 2, 3), H.leaf(3)
    H.gradcheck(function(x_, w_, b_) return F.conv2d(x_, w_, b_, { stride = { 2, 1 }, padding = 1 }) end,
      { x, w, b })
  end)

  it("passes a gradient check with a single output position", function()
    local x, w, b = H.leaf(2, 3, 2, 2), H.leaf(4, 3, 3, 3), H.leaf(4)
    H.gradcheck(function(x_, w_, b_) return F.conv2d(x_, w_, b_, { stride = 2, padding = 1 }) end,
      { x, w, b })
  end)

  it("accepts non-contiguous inputs", function()
    local x = miles.randn(2, 3, 6, 5):transpose(3, 4)
    local w = miles.randn(4, 3, 3, 3)
    H.assert_close(F.conv2d(x, w), F.conv2d(x:contiguous(), w), 1e-6, 1e-6)
  end)

  it("computes the same from channels-last inputs", function()
    for _, case in ipairs({ "conv_basic", "conv_groups", "conv_7x7s2" }) do
      local x, w = load(case, "x"):float(), load(case, "w"):float()
      local x_cl = x:permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3)
      x_cl.requires_grad = true
      local y = F.conv2d(x_cl, w, nil, conv_cases[case])
      local ref = F.conv2d(x, w, nil, conv_cases[case])
      H.assert_close(y, ref, 1e-5, 1e-5, case)
      local loss = (y * load(case, "proj"):float()):sum()
      loss:backward()
      local xr = x:clone()
      xr.requires_grad = true
      local loss_ref = (F.conv2d(xr, w, nil, conv_cases[case]) * load(case, "proj"):float()):sum()
      loss_ref:backward()
      H.assert_close(x_cl.grad, xr.grad, 1e-5, 1e-5, case .. " grad")
    end
  end)

  it("1x1 stride 2 on even sizes (rows no output reads): float32 agrees with float64", function()
    -- oneDNN saw these as negative padding and its weight-gradient kernel wrote
    -- out of bounds (an AddressSanitizer SEGV); the unread rows are now cut off
    for _, hw in ipairs({ 12, 14 }) do
      for _, cl in ipairs({ false, true }) do
        miles.manual_seed(hw)
        local x64, w64 = miles.randn(3, 8, hw, hw, { dtype = "float64" }), miles.randn(16, 8, 1, 1, { dtype = "float64" })
        local x32, w32 = x64:to("float32"), w64:to("float32")
        if cl then x32 = x32:permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3) end
        for _, t in ipairs({ x64, w64, x32, w32 }) do t.requires_grad = true end
        local y64 = F.conv2d(x64, w64, nil, { stride = 2 })
        local y32 = F.conv2d(x32, w32, nil, { stride = 2 })
        assert.same({ 3, 16, hw // 2, hw // 2 }, y32:shape())
        y64:sum():backward()
        y32:sum():backward()
        H.assert_close(y32, y64, 1e-4, 1e-4, "output")
        H.assert_close(w32.grad, w64.grad, 1e-4, 1e-3, "weight gradient")
        H.assert_close(x32.grad, x64.grad, 1e-4, 1e-4, "input gradient")
        assert.equal(0, x32.grad:narrow(3, hw, 1):abs():sum():item()) -- the unread row
      end
    end
  end)

  it("makes float32 outputs contiguous when channels_last(false), with the same values", function()
    local was = miles.channels_last()
    finally(function() miles.channels_last(was) end)
    miles.manual_seed(3)
    local net = miles.models.resnet.resnet10({ in_channels = 2, num_classes = 4, stem = "small",
                                              widths = { 8, 8, 16, 16 } })
    local x = miles.randn(3, 2, 12, 12)
    local function run()
      net:zero_grad()
      local y = F.conv2d(x, net.conv1.weight, nil, { padding = 1 })
      local out = net(x)
      out:sum():backward()
      return y, out, net.conv1.weight.grad:clone()
    end
    assert.is_true(miles.channels_last(true))
    local y1, out1, g1 = run()
    assert.is_false(y1:is_contiguous())
    assert.is_false(miles.channels_last(false))
    local y2, out2, g2 = run()
    assert.is_true(y2:is_contiguous())
    H.assert_close(y2, y1, 1e-5, 1e-5, "conv output")
    H.assert_close(out2, out1, 1e-4, 1e-4, "network output")
    H.assert_close(g2, g1, 1e-3, 1e-4, "weight gradient")
  end)

  it("keeps float32 activations channels-last through conv, batch norm, relu and add", function()
    local x = miles.randn(2, 3, 8, 8)
    local y = F.conv2d(x, miles.randn(4, 3, 3, 3), nil, 1, 1)
    assert.same({ 256, 1, 32, 4 }, y:stride())
    local z = F.batch_norm(y, miles.zeros(4), miles.ones(4), nil, nil, true)
    assert.same(y:stride(), z:stride())
    assert.same(y:stride(), (z:relu() + y):stride())
    H.assert_close(z:relu(), z:contiguous():relu(), 0, 0)
    -- float64 stays contiguous
    local y64 = F.conv2d(x:double(), miles.randn(4, 3, 3, 3):double(), nil, 1, 1)
    assert.is_true(y64:is_contiguous())
  end)

  it("reports bad shapes clearly", function()
    assert.matches("conv2d: expected a 4%-D input", H.error_of(F.conv2d, miles.randn(3, 4), miles.randn(1, 1, 1, 1)))
    assert.matches("expects 3 input channels", H.error_of(F.conv2d, miles.randn(1, 2, 5, 5), miles.randn(4, 3, 3, 3)))
    assert.matches("groups", H.error_of(F.conv2d, miles.randn(1, 3, 5, 5), miles.randn(4, 1, 3, 3), nil, 1, 0, 1, 2))
    assert.matches("smaller than the kernel", H.error_of(F.conv2d, miles.randn(1, 1, 2, 2), miles.randn(1, 1, 3, 3)))
    assert.matches("bias must have shape %[4%]", H.error_of(F.conv2d, miles.randn(1, 1, 5, 5), miles.randn(4, 1, 3, 3), miles.randn(3)))
    assert.matches("float64", H.error_of(F.conv2d, miles.randn(1, 1, 5, 5), miles.randn(4, 1, 3, 3, { dtype = "float64" })))
  end)
end)

local bn_cases = {
  bn_train = { training = true, affine = true },
  bn_eval = { training = false, affine = true },
  bn_noaffine = { training = true, affine = false },
  bn_1d = { training = true, affine = true },
  bn_1d_seq = { training = true, affine = true },
  bn_batch1_eval = { training = false, affine = true },
}

describe("batch_norm", function()
  it("takes training as a boolean: an options table in its place is an error", function()
    local x = miles.randn(2, 3, 4, 4)
    H.raises(function() F.batch_norm(x, nil, nil, nil, nil, { training = false }) end,
      "training must be a boolean (the options table is argument 9)")
  end)

  on_devices("batch_norm fixtures", function(dev, it)
    for case, o in pairs(bn_cases) do
      for _, dtype in ipairs({ "float64", "float32" }) do
        local tol = dtype == "float64" and 1e-10 or 2e-4
        it(case .. " matches PyTorch (" .. dtype .. ")", function()
          local x = leaf(load(case, "x"), dtype, dev)
          local rm, rv = load(case, "rm"):to(dtype):to(dev), load(case, "rv"):to(dtype):to(dev)
          local w = o.affine and leaf(load(case, "w"), dtype, dev) or nil
          local b = o.affine and leaf(load(case, "b"), dtype, dev) or nil
          local y = F.batch_norm(x, rm, rv, w, b, o.training, 0.1, 1e-5)
          H.assert_close(y:cpu(), load(case, "out"), tol, tol, "output")
          H.assert_close(rm:cpu(), load(case, "rm_after"), tol, tol, "running mean")
          H.assert_close(rv:cpu(), load(case, "rv_after"), tol, tol, "running var")
          local loss = (y * load(case, "proj"):to(dtype):to(dev)):sum()
          loss:backward()
          H.assert_close(x.grad:cpu(), load(case, "gx"), tol, tol, "grad input")
          if w then
            H.assert_close(w.grad:cpu(), load(case, "gw"), tol, tol, "grad weight")
            H.assert_close(b.grad:cpu(), load(case, "gb"), tol, tol, "grad bias")
          end
        end)
      end
    end
  end)

  it("passes gradient checks in both modes", function()
    for _, training in ipairs({ true, false }) do
      local x, w, b = H.leaf(3, 2, 2, 2), H.leaf(2), H.leaf(2)
      local rm, rv = miles.zeros(2, { dtype = "float64" }), miles.ones(2, { dtype = "float64" })
      H.gradcheck(function(x_, w_, b_)
        return F.batch_norm(x_, rm, rv, w_, b_, training, 0, 1e-5)
      end, { x, w, b })
    end
  end)

  it("gives the same results on channels-last inputs", function()
    for _, case in ipairs({ "bn_train", "bn_eval" }) do
      local o = bn_cases[case]
      local x = load(case, "x"):float():permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3)
      x.requires_grad = true
      local rm, rv = load(case, "rm"):float(), load(case, "rv"):float()
      local w, b = leaf(load(case, "w"), "float32"), leaf(load(case, "b"), "float32")
      local y = F.batch_norm(x, rm, rv, w, b, o.training, 0.1, 1e-5)
      assert.same(x:stride(), y:stride())
      H.assert_close(y, load(case, "out"), 2e-4, 2e-4, case)
      H.assert_close(rm, load(case, "rm_after"), 2e-4, 2e-4, case .. " running mean")
      local loss = (y * load(case, "proj"):float()):sum()
      loss:backward()
      H.assert_close(x.grad, load(case, "gx"), 2e-4, 2e-4, case .. " grad input")
      H.assert_close(w.grad, load(case, "gw"), 2e-4, 2e-4, case .. " grad weight")
    end
  end)

  -- The epilogue {residual =, relu =} must give the separate ops' values and
  -- gradients bit for bit (each step rounded alike), in both modes, dtypes and
  -- layouts, with the residual in another layout than x; and on a tensor large
  -- enough for the CPU's threads (32768 values) in both layouts. On a GPU,
  -- float32 batch norm goes through cuDNN, whose fused graph keeps the norm's
  -- output unrounded before the sum: there, within a float32 rounding or two.
  local EPILOGUE_CASES = {}
  for _, dtype in ipairs({ "float32", "float64" }) do
    for _, training in ipairs({ true, false }) do
      for _, layout in ipairs({ "nchw", "nhwc" }) do
        for _, ep in ipairs({ { relu = true }, { residual = true }, { residual = true, relu = true } }) do
          EPILOGUE_CASES[#EPILOGUE_CASES + 1] = { { 4, 3, 5, 6 }, dtype, training, layout, ep }
        end
      end
    end
  end
  for _, layout in ipairs({ "nchw", "nhwc" }) do
    EPILOGUE_CASES[#EPILOGUE_CASES + 1] = { { 8, 16, 16, 16 }, "float32", true, layout,
                                            { residual = true, relu = true } }
  end
  on_devices("batch_norm's epilogue", function(dev, it)
    it("equals batch_norm, + residual and relu as separate ops", function()
      for _, case in ipairs(EPILOGUE_CASES) do
        local shape, dtype, training, layout, ep = table.unpack(case)
        local C = shape[2]
        miles.manual_seed(7)
        local base = miles.randn(table.unpack(shape)):to(dtype)
        if layout == "nhwc" then base = base:permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3) end
        local r0, w0, b0 = miles.randn(table.unpack(shape)):to(dtype), miles.randn(C):to(dtype), miles.randn(C):to(dtype)
        local proj = miles.randn(table.unpack(shape)):to(dtype):to(dev)
        local function run(fused)
          local x, r, w, b = leaf(base, dtype, dev), leaf(r0, dtype, dev), leaf(w0, dtype, dev), leaf(b0, dtype, dev)
          local rm, rv = miles.zeros(C, { dtype = dtype }):to(dev), miles.ones(C, { dtype = dtype }):to(dev)
          local y
          if fused then
            y = F.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5,
                             { residual = ep.residual and r or nil, relu = ep.relu })
          else
            y = F.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5)
            if ep.residual then y = y + r end
            if ep.relu then y = F.relu(y) end
          end
          ;(y * proj):sum():backward()
          return { y, x.grad, w.grad, b.grad, ep.residual and r.grad or rm, rm, rv }
        end
        local got, want = run(true), run(false)
        local exact = dev == "cpu" or dtype == "float64"
        for i = 1, #want do
          local what = ("%s %s %s training=%s %s: value %d"):format(table.concat(shape, "x"), dtype,
            layout, training, ep.residual and (ep.relu and "residual+relu" or "residual") or "relu", i)
          if exact then
            assert.equal(0, H.max_abs_diff(got[i]:cpu(), want[i]:cpu()), what)
          else
            H.assert_close(got[i]:cpu(), want[i]:cpu(), 1e-6, 1e-6, what)
          end
        end
      end
    end)
  end)

  it("passes gradient checks with its epilogue", function()
    for _, training in ipairs({ true, false }) do
      local x, w, b, r = H.leaf(3, 2, 2, 2), H.leaf(2), H.leaf(2), H.leaf(3, 2, 2, 2)
      local rm, rv = miles.zeros(2, { dtype = "float64" }), miles.ones(2, { dtype = "float64" })
      H.gradcheck(function(x_, w_, b_, r_)
        return F.batch_norm(x_, rm, rv, w_, b_, training, 0, 1e-5, { residual = r_, relu = true })
      end, { x, w, b, r })
    end
  end)

  it("checks the residual and the options", function()
    local x, rm, rv = miles.randn(4, 3, 2, 2), miles.zeros(3), miles.ones(3)
    assert.matches("the residual %[4,3,2%] is not the input's shape %[4,3,2,2%]",
      H.error_of(F.batch_norm, x, rm, rv, nil, nil, true, 0.1, 1e-5, { residual = miles.randn(4, 3, 2) }))
    assert.matches("the residual is float64 but the input is float32",
      H.error_of(F.batch_norm, x, rm, rv, nil, nil, true, 0.1, 1e-5,
        { residual = miles.randn(4, 3, 2, 2):double() }))
    assert.matches("unknown option 'relu6'",
      H.error_of(F.batch_norm, x, rm, rv, nil, nil, true, 0.1, 1e-5, { relu6 = true }))
  end)

  it("needs more than one value per channel to train", function()
    assert.matches("more than 1 value per channel",
      H.error_of(F.batch_norm, miles.randn(1, 3), miles.zeros(3), miles.ones(3), nil, nil, true))
  end)

  it("checks the statistics' shapes", function()
    assert.matches("running_mean must have shape %[3%]",
      H.error_of(F.batch_norm, miles.randn(4, 3), miles.zeros(2), miles.ones(3), nil, nil, true))
  end)
end)
