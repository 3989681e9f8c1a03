-- miles.decide: the MILES decision (Algorithm 1 of the paper, docs/BASELINES.md
-- "MILES"). Every branch by hand, the errors, and a randomized comparison with an
-- independent Lua implementation written from the paper's pseudo-code (on
-- learning rates, as printed) over thousands of epoch sequences.
local miles = require "miles"
local H = require "helpers"

local raises = H.raises

local function close(a, b, what)
  assert(math.abs(a - b) <= 1e-12, string.format("%s: %.17g ~= %.17g", what or "value", a, b))
end

-- Assert that a decision has this action, these scales and (optionally) these u.
local function check(d, action, scale, u)
  assert.are.equal(action, d.action)
  assert.are.equal(#scale, #d.scale)
  for i = 1, #scale do
    assert.are.equal(scale[i], d.scale[i], "scale " .. i)
  end
  for i = 1, u and #u or 0 do
    close(d.u[i], u[i], "u_" .. i)
  end
end

describe("miles.decide by hand (two modalities)", function()
  it("computes u (Eq. 4) and delta (Eq. 5)", function()
    local d = miles.decide(0.8, { 0.6, 0.5 }, { tau = 0.5, mu = 0.5 })
    close(d.u[1], (0.8 - 0.5) / 0.8, "u_A")
    close(d.u[2], (0.8 - 0.6) / 0.8, "u_B")
    close(d.delta, math.abs(d.u[1] - d.u[2]), "delta")
    assert.are.equal("none_balanced", d.action)
    assert.are.same({}, d.slowed)
    assert.is_string(d.reason)
  end)

  it("takes no action when both u are negative (line 8), whatever prev says", function()
    -- u_A = (0.5 - 0.9) / 0.5 = -0.8, u_B = -0.6: delta 0.2 > tau 0.1
    local d = miles.decide(0.5, { 0.8, 0.9 }, { tau = 0.1, mu = 0.5, prev = { 0.5, 1 } })
    check(d, "none_both_negative", { 1, 1 }, { -0.8, -0.6 })
    close(d.delta, 0.2)
    assert.are.same({}, d.slowed)
    assert.truthy(d.reason:find("negative", 1, true))
  end)

  it("reports none_balanced when delta <= tau even if both u are negative", function()
    local d = miles.decide(0.5, { 0.8, 0.9 }, { tau = 0.5, mu = 0.5 })
    check(d, "none_balanced", { 1, 1 })
  end)

  it("takes no action when delta <= tau, equality included (exact dyadic values)", function()
    -- u_A = 1 - 0.75 = 0.25, u_B = 1 - 0.5 = 0.5, delta = 0.25 exactly
    local d = miles.decide(1, { 0.5, 0.75 }, { tau = 0.25, mu = 0.5, prev = { 0.5, 1 } })
    check(d, "none_balanced", { 1, 1 }, { 0.25, 0.5 })
    assert.are.equal(0.25, d.delta)
    -- just over: tau below delta acts
    d = miles.decide(1, { 0.5, 0.75 }, { tau = 0.125, mu = 0.5 })
    check(d, "slow_2", { 1, 0.5 })
  end)

  it("slows A when u_A > 0 and u_B < 0 (lines 12-13)", function()
    -- u_A = (0.8 - 0.6) / 0.8 = 0.25, u_B = (0.8 - 0.9) / 0.8 = -0.125
    local d = miles.decide(0.8, { 0.9, 0.6 }, { tau = 0.2, mu = 0.3 })
    check(d, "slow_1", { 0.3, 1 }, { 0.25, -0.125 })
    assert.are.same({ 1 }, d.slowed)
  end)

  it("slows B when u_A < 0 and u_B > 0 (lines 14-15)", function()
    local d = miles.decide(0.8, { 0.6, 0.9 }, { tau = 0.2, mu = 0.3 })
    check(d, "slow_2", { 1, 0.3 }, { -0.125, 0.25 })
    assert.are.same({ 2 }, d.slowed)
  end)

  it("both positive: slows B if u_A < u_B, else A (lines 17-20)", function()
    -- u_A = (1 - 0.75) = 0.25 < u_B = (1 - 0.25) = 0.75
    check(miles.decide(1, { 0.25, 0.75 }, { tau = 0.2, mu = 0.5 }), "slow_2", { 1, 0.5 }, { 0.25, 0.75 })
    check(miles.decide(1, { 0.75, 0.25 }, { tau = 0.2, mu = 0.5 }), "slow_1", { 0.5, 1 }, { 0.75, 0.25 })
  end)

  it("u exactly 0 goes to the else-branch (strict signs in lines 12 and 14)", function()
    -- u_A = 0, u_B < 0: not both negative, not (u_A > 0), so "u_A < u_B" is false: A
    check(miles.decide(0.5, { 0.75, 0.5 }, { tau = 0.2, mu = 0.5 }), "slow_1", { 0.5, 1 }, { 0, -0.5 })
    -- u_A = 0, u_B > 0: else-branch, u_A < u_B: B
    check(miles.decide(0.5, { 0.25, 0.5 }, { tau = 0.2, mu = 0.5 }), "slow_2", { 1, 0.5 }, { 0, 0.5 })
    -- u_A < 0, u_B = 0: else-branch, u_A < u_B: B
    check(miles.decide(0.5, { 0.5, 0.75 }, { tau = 0.2, mu = 0.5 }), "slow_2", { 1, 0.5 }, { -0.5, 0 })
    -- u_A > 0, u_B = 0: else-branch, not u_A < u_B: A
    check(miles.decide(0.5, { 0.5, 0.25 }, { tau = 0.2, mu = 0.5 }), "slow_1", { 0.5, 1 }, { 0.5, 0 })
    -- both 0: delta 0 <= tau
    check(miles.decide(0.5, { 0.5, 0.5 }, { tau = 0, mu = 0.5 }), "none_balanced", { 1, 1 }, { 0, 0 })
  end)

  it("a tie u_A == u_B cannot act: delta is 0 <= tau even for tau = 0", function()
    local d = miles.decide(0.9, { 0.6, 0.6 }, { tau = 0, mu = 0.5, prev = { 0.5, 1 } })
    check(d, "none_balanced", { 1, 1 })
    assert.are.equal(0, d.delta)
  end)

  it("M_fused = 0: u undefined (NaN), no action, both scales 1, the reason says why", function()
    local d = miles.decide(0, { 0.3, 0.7 }, { tau = 0.1, mu = 0.5, prev = { 0.5, 1 } })
    check(d, "none_fused_zero", { 1, 1 })
    assert.is_true(d.u[1] ~= d.u[1] and d.u[2] ~= d.u[2], "u is NaN")
    assert.is_true(d.delta ~= d.delta, "delta is NaN")
    assert.are.same({}, d.slowed)
    assert.truthy(d.reason:find("fused metric is 0", 1, true))
  end)

  it("assigns mu, never compounds it", function()
    local d = miles.decide(0.8, { 0.9, 0.6 }, { tau = 0.2, mu = 0.5, prev = { 0.5, 1 } })
    check(d, "slow_1", { 0.5, 1 })
  end)

  it("reset_other = false keeps the other scale from an earlier epoch (as printed)", function()
    local e1 = miles.decide(0.8, { 0.9, 0.6 }, { tau = 0.2, mu = 0.5 })
    check(e1, "slow_1", { 0.5, 1 })
    local e2 = miles.decide(0.8, { 0.6, 0.9 }, { tau = 0.2, mu = 0.5, prev = e1.scale })
    check(e2, "slow_2", { 0.5, 0.5 })
    -- the default is false
    local e2d = miles.decide(0.8, { 0.6, 0.9 }, { tau = 0.2, mu = 0.5, prev = e1.scale, reset_other = false })
    check(e2d, "slow_2", { 0.5, 0.5 })
    -- a no-action epoch afterwards restores both
    check(miles.decide(0.8, { 0.6, 0.6 }, { tau = 0.2, mu = 0.5, prev = e2.scale }), "none_balanced", { 1, 1 })
  end)

  it("reset_other = true resets the other scale to 1", function()
    local e1 = miles.decide(0.8, { 0.9, 0.6 }, { tau = 0.2, mu = 0.5, reset_other = true })
    check(e1, "slow_1", { 0.5, 1 })
    local e2 = miles.decide(0.8, { 0.6, 0.9 }, { tau = 0.2, mu = 0.5, prev = e1.scale, reset_other = true })
    check(e2, "slow_2", { 1, 0.5 })
    -- prev values other than 1 or mu are carried (reset_other = false) or dropped (true)
    check(miles.decide(0.8, { 0.6, 0.9 }, { tau = 0.2, mu = 0.5, prev = { 0.7, 0.2 } }), "slow_2", { 0.7, 0.5 })
    check(miles.decide(0.8, { 0.6, 0.9 }, { tau = 0.2, mu = 0.5, prev = { 0.7, 0.2 }, reset_other = true }),
      "slow_2", { 1, 0.5 })
  end)

  it("defaults: tau 0.2, mu 0.5, prev all 1", function()
    local d = miles.decide(0.8, { 0.9, 0.6 })
    check(d, "slow_1", { 0.5, 1 })
    check(miles.decide(1, { 0.5, 0.75 }), "slow_2", { 1, 0.5 })          -- delta 0.25 > 0.2
    check(miles.decide(1, { 0.5, 0.625 }), "none_balanced", { 1, 1 })    -- delta 0.125
    check(miles.decide(1, { 0.5, 0.8 }, {}), "slow_2", { 1, 0.5 })       -- empty opts
  end)

  it("mu = 1 acts but changes no rate; tau = 1 never acts on metrics in [0, 1]", function()
    check(miles.decide(0.8, { 0.9, 0.6 }, { tau = 0.2, mu = 1 }), "slow_1", { 1, 1 })
    check(miles.decide(1, { 0, 1 }, { tau = 1, mu = 0.5 }), "none_balanced", { 1, 1 })
  end)
end)

describe("miles.decide by hand (three modalities, our extension)", function()
  -- u_i = (0.9 - mean of the others) / 0.9: u = {5/9, 0.25/0.9, 0.35/0.9}
  local M = { 0.8, 0.3, 0.5 }
  local U = { (0.9 - 0.4) / 0.9, (0.9 - 0.65) / 0.9, (0.9 - 0.55) / 0.9 }

  it("u_i uses the mean of the other modalities; delta is the largest pair's", function()
    local d = miles.decide(0.9, M, { tau = 0.5, mu = 0.5 })
    check(d, "none_balanced", { 1, 1, 1 }, U)
    close(d.delta, U[1] - U[2], "delta")
  end)

  it("slows every modality that some pair slows", function()
    -- pairs: (1,2) 0.278 -> 1; (1,3) 0.167 -> 1; (2,3) 0.111 -> 3
    local d = miles.decide(0.9, M, { tau = 0.1, mu = 0.25, prev = { 1, 0.5, 1 } })
    check(d, "slow_1_3", { 0.25, 0.5, 0.25 }, U)
    assert.are.same({ 1, 3 }, d.slowed)
    assert.truthy(d.reason:find("modalities 1, 3", 1, true))
    d = miles.decide(0.9, M, { tau = 0.1, mu = 0.25, prev = { 1, 0.5, 1 }, reset_other = true })
    check(d, "slow_1_3", { 0.25, 1, 0.25 })
  end)

  it("only the pairs over tau act", function()
    -- only (1,2) is over 0.2
    local d = miles.decide(0.9, M, { tau = 0.2, mu = 0.5, prev = { 1, 0.5, 0.5 } })
    check(d, "slow_1", { 0.5, 0.5, 0.5 })
    d = miles.decide(0.9, M, { tau = 0.2, mu = 0.5, prev = { 1, 0.5, 0.5 }, reset_other = true })
    check(d, "slow_1", { 0.5, 1, 1 })
  end)

  it("no pair acts when every pair over tau has both u negative", function()
    -- u = {-0.25/0.3, -0.45/0.3, -0.4/0.3}: all negative, every delta > 0.1
    local d = miles.decide(0.3, { 0.9, 0.5, 0.6 }, { tau = 0.1, mu = 0.5, prev = { 0.5, 0.5, 1 } })
    check(d, "none_both_negative", { 1, 1, 1 })
  end)

  it("a negative pair does not stop another pair from acting", function()
    -- Mf = 0.6, M = {0.2, 0.9, 0.8}: u = {(0.6-0.85)/0.6, (0.6-0.5)/0.6, (0.6-0.55)/0.6}
    -- = {-0.4167, 0.1667, 0.0833}; (1,2) -> 2 ; (1,3) -> 3 ; (2,3) 0.083 <= 0.1
    local d = miles.decide(0.6, { 0.2, 0.9, 0.8 }, { tau = 0.1, mu = 0.5 })
    check(d, "slow_2_3", { 1, 0.5, 0.5 })
    -- Mf = 0.5, M = {0.2, 0.5, 1.0}: u = {-0.5, -0.2, 0.3}; (1,2) is over tau but both
    -- negative (no action); (1,3) and (2,3) slow 3
    d = miles.decide(0.5, { 0.2, 0.5, 1.0 }, { tau = 0.1, mu = 0.5, prev = { 0.5, 1, 1 } })
    check(d, "slow_3", { 0.5, 1, 0.5 }, { -0.5, -0.2, 0.3 })
  end)

  it("M_fused = 0 with three modalities", function()
    check(miles.decide(0, { 0.1, 0.2, 0.3 }, { tau = 0, mu = 0.5 }), "none_fused_zero", { 1, 1, 1 })
  end)
end)

describe("miles.decide errors", function()
  it("tau outside [0, 1] names the value", function()
    raises(function() miles.decide(0.5, { 0.4, 0.3 }, { tau = 1.5, mu = 0.5 }) end,
      "miles.decide: tau must be in [0, 1], got 1.5")
    raises(function() miles.decide(0.5, { 0.4, 0.3 }, { tau = -0.1, mu = 0.5 }) end,
      "miles.decide: tau must be in [0, 1], got -0.1")
    raises(function() miles.decide(0.5, { 0.4, 0.3 }, { tau = 0 / 0, mu = 0.5 }) end,
      "miles.decide: tau must be in [0, 1], got")
    raises(function() miles.decide(0.5, { 0.4, 0.3 }, { tau = "x" }) end,
      "miles.decide: 'tau' must be a number, got string")
  end)

  it("mu outside (0, 1] names the value", function()
    raises(function() miles.decide(0.5, { 0.4, 0.3 }, { tau = 0.2, mu = 0 }) end,
      "miles.decide: mu must be in (0, 1], got 0")
    raises(function() miles.decide(0.5, { 0.4, 0.3 }, { tau = 0.2, mu = 1.25 }) end,
      "miles.decide: mu must be in (0, 1], got 1.25")
    raises(function() miles.decide(0.5, { 0.4, 0.3 }, { tau = 0.2, mu = -0.5 }) end,
      "miles.decide: mu must be in (0, 1], got -0.5")
  end)

  it("prev must hold one positive finite scale per modality", function()
    raises(function() miles.decide(0.5, { 0.4, 0.3 }, { prev = { 1, 0 } }) end,
      "miles.decide: prev[2] (the scale in force) must be finite and > 0, got 0")
    raises(function() miles.decide(0.5, { 0.4, 0.3 }, { prev = { -1, 1 } }) end,
      "miles.decide: prev[1] (the scale in force) must be finite and > 0, got -1")
    raises(function() miles.decide(0.5, { 0.4, 0.3 }, { prev = { 1, math.huge } }) end,
      "prev[2] (the scale in force) must be finite and > 0, got inf")
    raises(function() miles.decide(0.5, { 0.4, 0.3 }, { prev = { 1 } }) end,
      "miles.decide: prev has 1 scales but there are 2 modalities")
    raises(function() miles.decide(0.5, { 0.4, 0.3 }, { prev = { 1, "a" } }) end,
      "miles.decide: prev[2] must be a number, got string")
    raises(function() miles.decide(0.5, { 0.4, 0.3 }, { prev = 1 }) end,
      "miles.decide: 'prev' must be a list of scales, got number")
  end)

  it("metrics: at least two, finite numbers", function()
    raises(function() miles.decide(0.5, { 0.4 }) end,
      "miles.decide: the number of modalities must be in [2, 64], got 1")
    raises(function() miles.decide(0.5, { 0.4, 0 / 0 }) end,
      "miles.decide: the metric of modality 2 must be finite, got")
    raises(function() miles.decide(math.huge, { 0.4, 0.3 }) end,
      "miles.decide: the fused metric must be finite, got inf")
    raises(function() miles.decide(0.5, { 0.4, "x" }) end,
      "miles.decide: metrics[2] must be a number, got string")
    raises(function() miles.decide("a", { 0.4, 0.3 }) end, "number expected")
  end)

  it("unknown options are refused (a typo must not silently use a default)", function()
    raises(function() miles.decide(0.5, { 0.4, 0.3 }, { tua = 0.1 }) end,
      "miles.decide: unknown option 'tua' (known: tau, mu, reset_other, prev)")
    raises(function() miles.decide(0.5, { 0.4, 0.3 }, { reset_other = 1 }) end,
      "miles.decide: 'reset_other' must be a boolean, got number")
  end)
end)

describe("miles.head_gap (the paper's Delta between unimodal heads)", function()
  it("is |M_A - M_B| for two and max - min for more", function()
    close(miles.head_gap({ 0.9, 0.6 }), 0.3)
    close(miles.head_gap({ 0.6, 0.9 }), 0.3)
    close(miles.head_gap({ 0.2, 0.9, 0.5 }), 0.7)
    raises(function() miles.head_gap({ 0.5 }) end, "miles.head_gap: the number of modalities")
    raises(function() miles.head_gap({ 0.5, 0 / 0 }) end, "miles.head_gap: the metric of modality 2")
  end)
end)

-- ---------------------------------------------------------------------------
-- The independent reference, written from the paper's Algorithm 1 (two
-- modalities: learning rates alpha_A, alpha_B, alpha_AB) and from BASELINES.md
-- (more modalities, reset_other, M_AB = 0). It keeps learning rates, not scales,
-- and its own state from epoch to epoch.

-- Algorithm 1, lines 5-23, for two modalities; lr = {alpha_A, alpha_B} in force.
local function reference_two(lr, alpha, M_AB, M_A, M_B, tau, mu, reset_other)
  if M_AB == 0 then -- BASELINES: u undefined, both rates alpha
    return { alpha, alpha }, "none_fused_zero"
  end
  local u_A = (M_AB - M_B) / M_AB
  local u_B = (M_AB - M_A) / M_AB
  local delta = math.abs(u_A - u_B)
  local alpha_A, alpha_B = lr[1], lr[2]
  if (delta <= tau) or (u_A < 0 and u_B < 0) then
    alpha_A = alpha
    alpha_B = alpha
    return { alpha_A, alpha_B }, delta <= tau and "none_balanced" or "none_both_negative"
  end
  if reset_other then -- the public re-implementation: the other one back to alpha
    alpha_A, alpha_B = alpha, alpha
  end
  local action
  if u_A > 0 and u_B < 0 then
    alpha_A = mu * alpha; action = "slow_1"
  elseif u_A < 0 and u_B > 0 then
    alpha_B = mu * alpha; action = "slow_2"
  else
    if u_A < u_B then
      alpha_B = mu * alpha; action = "slow_2"
    else
      alpha_A = mu * alpha; action = "slow_1"
    end
  end
  return { alpha_A, alpha_B }, action
end

-- BASELINES.md's extension to n modalities: every pair decides as Algorithm 1.
local function reference_n(lr, alpha, Mf, M, tau, mu, reset_other)
  local n = #M
  local new = {}
  if Mf == 0 then
    for i = 1, n do new[i] = alpha end
    return new, "none_fused_zero"
  end
  local u = {}
  for i = 1, n do
    local s = 0
    for j = 1, n do
      if j ~= i then s = s + M[j] end
    end
    u[i] = (Mf - s / (n - 1)) / Mf
  end
  local slow, largest = {}, 0
  for i = 1, n do
    for j = i + 1, n do
      local d = math.abs(u[i] - u[j])
      if d > largest then largest = d end
      if not (d <= tau or (u[i] < 0 and u[j] < 0)) then
        if u[i] > 0 and u[j] < 0 then slow[i] = true
        elseif u[i] < 0 and u[j] > 0 then slow[j] = true
        elseif u[i] < u[j] then slow[j] = true
        else slow[i] = true end
      end
    end
  end
  local names = {}
  for i = 1, n do
    if slow[i] then names[#names + 1] = tostring(i) end
  end
  if #names == 0 then
    for i = 1, n do new[i] = alpha end
    return new, largest <= tau and "none_balanced" or "none_both_negative"
  end
  for i = 1, n do
    if slow[i] then new[i] = mu * alpha
    elseif reset_other then new[i] = alpha
    else new[i] = lr[i] end
  end
  return new, "slow_" .. table.concat(names, "_")
end

-- A metric: continuous in [0, 1], or on the grid k/8 (so that zeros, equal
-- metrics, u == 0 and delta == tau happen often).
local function draw_metric(grid)
  if grid then return math.random(0, 8) / 8 end
  return math.random()
end

local function draw_tau(grid)
  if grid then return math.random(0, 8) / 8 end
  return math.random() * (math.random() < 0.5 and 1 or 0.3)
end

local function draw_mu(grid)
  if grid then return math.random(1, 8) / 8 end
  return 1 - math.random() -- (0, 1]
end

-- Run one sequence of epochs through miles.decide (prev = its previous scales)
-- and through the reference (its own learning rates); compare every epoch.
-- Returns the number of epochs and the actions seen.
local function compare_sequence(n, seen)
  local grid = math.random() < 0.5
  local tau, mu = draw_tau(grid), draw_mu(grid)
  local reset_other = math.random() < 0.5
  local alpha = 10 ^ (-math.random(2, 5)) * (1 + math.random())
  local lr, prev = {}, {}
  for i = 1, n do lr[i], prev[i] = alpha, 1 end
  local epochs = math.random(1, 30)
  for e = 1, epochs do
    local Mf, M = draw_metric(grid), {}
    for i = 1, n do M[i] = draw_metric(grid) end
    local d = miles.decide(Mf, M, { tau = tau, mu = mu, reset_other = reset_other, prev = prev })
    local want, action
    if n == 2 then
      want, action = reference_two(lr, alpha, Mf, M[1], M[2], tau, mu, reset_other)
      -- the n-modality reference must agree with Algorithm 1 for two
      local want_n, action_n = reference_n(lr, alpha, Mf, M, tau, mu, reset_other)
      assert(action_n == action, "reference_n disagrees with reference_two")
      for i = 1, 2 do assert(want_n[i] == want[i]) end
    else
      want, action = reference_n(lr, alpha, Mf, M, tau, mu, reset_other)
    end
    if d.action ~= action then
      error(string.format("epoch %d: action %s, reference %s (Mf %.17g, M {%s}, tau %.17g, mu %.17g, "
        .. "reset_other %s, u {%s})", e, d.action, action, Mf, table.concat(M, ", "), tau, mu,
        tostring(reset_other), table.concat(d.u, ", ")))
    end
    for i = 1, n do
      local got = d.scale[i] * alpha
      assert(math.abs(got - want[i]) <= 1e-15 * alpha,
        string.format("epoch %d: modality %d rate %.17g, reference %.17g (%s)", e, i, got, want[i], action))
    end
    seen[action:match("^slow") and "slow" or action] = true
    if n == 2 and Mf ~= 0 and d.delta == tau then seen.delta_eq_tau = true end
    for i = 1, n do
      if d.u[i] == 0 then seen.u_zero = true end
    end
    if #d.slowed > 1 then seen.several = true end
    lr, prev = want, d.scale
  end
  return epochs
end

describe("miles.decide against an independent Algorithm 1", function()
  local SEQUENCES = 3000

  for _, n in ipairs({ 2, 3, 4 }) do
    it(string.format("agrees on %d random sequences of epochs with %d modalities", SEQUENCES, n), function()
      math.randomseed(20240611 + n)
      local seen, epochs = {}, 0
      for _ = 1, SEQUENCES do
        epochs = epochs + compare_sequence(n, seen)
      end
      assert(epochs > SEQUENCES * 10, "too few epochs compared")
      for _, k in ipairs({ "none_balanced", "none_both_negative", "none_fused_zero", "slow", "u_zero" }) do
        assert(seen[k], "the random sequences never produced " .. k)
      end
      if n == 2 then assert(seen.delta_eq_tau, "no epoch had delta == tau") end
      if n > 2 then assert(seen.several, "no epoch slowed several modalities") end
    end)
  end
end)
