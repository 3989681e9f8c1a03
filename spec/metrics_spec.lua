-- miles.metrics: accuracy, top-k, confusion matrix, precision / recall / F1 with
-- the four averages, single- and multi-label, one-shot and streamed. The
-- reference values in spec/fixtures/metrics/ come from a numpy re-implementation
-- of scikit-learn's definitions (spec/fixtures/make_metrics_fixtures.py).
local miles = require "miles"
local H = require "helpers"
local M = miles.metrics

local FIX = "spec/fixtures/metrics/"
local CASES = dofile(FIX .. "cases.lua")
local AVERAGES = { "micro", "macro", "weighted", "samples" }

-- Assert that fn raises an error whose message contains every given piece.
local function raises(fn, ...)
  local msg = H.error_of(fn)
  for _, piece in ipairs({ ... }) do
    assert(msg:find(piece, 1, true), string.format("error %q lacks %q", msg, piece))
  end
  return msg
end

local function close(a, b, what, tol)
  assert(type(a) == "number", (what or "value") .. ": not a number")
  assert(math.abs(a - b) <= (tol or 1e-12), string.format("%s: %.17g ~= %.17g", what or "value", a, b))
end

local function load(case)
  return miles.load(FIX .. case.data .. "_x.npy"), miles.load(FIX .. case.data .. "_y.npy")
end

-- The one-shot options of a fixture case (no topk: that is the accumulator's).
local function oneshot_opts(case, extra)
  local o = {}
  for k, v in pairs(case.opts) do
    if k ~= "topk" then o[k] = v end
  end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- Compare an accumulator result with a case's expected values.
local function check_result(r, exp, name)
  close(r.accuracy, exp.accuracy, name .. " accuracy")
  for _, avg in ipairs(AVERAGES) do
    for _, m in ipairs({ "f1", "precision", "recall" }) do
      local k = m .. "_" .. avg
      close(r[k], exp[k], name .. " " .. k)
    end
  end
  for _, m in ipairs({ "f1", "precision", "recall" }) do
    assert.are.equal(#exp[m], #r[m])
    for c = 1, #exp[m] do close(r[m][c], exp[m][c], string.format("%s %s[%d]", name, m, c)) end
  end
  assert.are.same(exp.support, r.support)
  for k, v in pairs(exp) do
    if k:match("^top%d+$") then close(r[k], v, name .. " " .. k) end
  end
  if exp.confusion then
    assert.are.equal("int64", r.confusion:dtype())
    assert.are.same(exp.confusion, r.confusion:totable())
  end
end

-- Every number of two results is identical (streamed == one-shot).
local function same_results(a, b, name)
  for k, v in pairs(a) do
    if type(v) == "number" then
      assert(v == b[k], string.format("%s: %s %.17g ~= %.17g", name, k, v, b[k]))
    elseif type(v) == "table" then
      assert.are.same(v, b[k])
    end
  end
  if a.confusion then assert.are.same(a.confusion:totable(), b.confusion:totable()) end
end

describe("metrics against the numpy (sklearn-equivalent) fixtures", function()
  for _, case in ipairs(CASES) do
    describe(case.name, function()
      local x, y = load(case)
      local exp = case.expected

      it("one-shot accuracy, top-k, precision/recall/F1 (all four averages)", function()
        local o = oneshot_opts(case)
        close(M.accuracy(x, y, o), exp.accuracy, "accuracy")
        for _, k in ipairs(case.opts.topk or {}) do
          close(M.topk(x, y, k, o), exp["top" .. k], "top" .. k)
        end
        for _, avg in ipairs(AVERAGES) do
          local oa = oneshot_opts(case, { average = avg })
          close(M.f1(x, y, oa), exp["f1_" .. avg], "f1_" .. avg)
          close(M.precision(x, y, oa), exp["precision_" .. avg], "precision_" .. avg)
          close(M.recall(x, y, oa), exp["recall_" .. avg], "recall_" .. avg)
        end
        if exp.confusion then
          assert.are.same(exp.confusion, M.confusion(x, y):totable())
          assert.are.same(exp.confusion, M.confusion(x, y, case.opts.classes):totable())
        end
      end)

      it("the accumulator's result, in one batch", function()
        local acc = M.Accumulator(case.opts)
        check_result(acc:add(x, y):result(), exp, case.name)
      end)

      it("streamed in random batches equals the one-shot result exactly", function()
        math.randomseed(7)
        local whole = M.Accumulator(case.opts):add(x, y):result()
        local n = x:size(1)
        for _ = 1, 5 do
          local acc = M.Accumulator(case.opts)
          local start = 1
          while start <= n do
            local len = math.min(math.random(0, 37), n - start + 1)
            acc:add(x:narrow(1, start, len), y:narrow(1, start, len))
            start = start + len
          end
          assert.are.equal(n, acc:count())
          same_results(whole, acc:result(), case.name)
        end
      end)

      it("gives the same values for non-contiguous and float64 inputs", function()
        local whole = M.Accumulator(case.opts):add(x, y):result()
        local xt = x:t():contiguous():t()
        assert.is_false(xt:is_contiguous())
        same_results(whole, M.Accumulator(case.opts):add(xt, y):result(), case.name .. " strided")
        same_results(whole, M.Accumulator(case.opts):add(x:to("float64"), y):result(),
          case.name .. " float64")
      end)
    end)
  end

  it("covers the MM-IMDb report: multi-label F1 micro/macro/weighted/samples differ", function()
    local case
    for _, c in ipairs(CASES) do
      if c.name == "ml_imdb_zd0" then case = c end
    end
    local e = case.expected
    assert(e.f1_micro ~= e.f1_macro and e.f1_macro ~= e.f1_weighted and e.f1_weighted ~= e.f1_samples)
  end)
end)

describe("metrics by hand", function()
  local f32 = { dtype = "float32" }
  local i64 = { dtype = "int64" }

  it("argmax takes the first of equal maxima; NaN counts as the largest (NumPy)", function()
    local nan = 0 / 0
    local x = miles.tensor({ { 1, 1, 0 }, { 0, 2, 2 }, { nan, 5, 1 }, { 1, nan, nan } }, f32)
    local cm = M.confusion(x, miles.tensor({ 1, 1, 1, 1 }, i64))
    assert.are.same({ { 2, 2, 0 }, { 0, 0, 0 }, { 0, 0, 0 } }, cm:totable())
  end)

  it("top-k breaks ties like argmax (top-1 == accuracy); k >= C counts everything", function()
    local x = miles.tensor({ { 1, 1, 1 }, { 1, 1, 1 }, { 1, 1, 1 }, { 0, 3, 3 } }, f32)
    local y = miles.tensor({ 1, 2, 3, 3 }, i64)
    close(M.accuracy(x, y), 0.25)
    close(M.topk(x, y, 1), 0.25)
    close(M.topk(x, y, 2), 0.75) -- class 3 in row 3 ranks third among three ties
    close(M.topk(x, y, 3), 1)
    close(M.topk(x, y, 10), 1)
  end)

  it("class indices as predictions (confusion rows = true class)", function()
    local pred = miles.tensor({ 1, 2, 2, 3 }, i64)
    local y = miles.tensor({ 1, 1, 2, 3 }, i64)
    assert.are.same({ { 1, 1, 0, 0 }, { 0, 1, 0, 0 }, { 0, 0, 1, 0 }, { 0, 0, 0, 0 } },
      M.confusion(pred, y, 4):totable())
    close(M.accuracy(pred, y, { classes = 3 }), 0.75)
    -- macro over classes present: F1 = {2/3, 2/3, 1}
    close(M.f1(pred, y, { classes = 4, average = "macro" }), (2 / 3 + 2 / 3 + 1) / 3)
    close(M.f1(pred, y, { classes = 4, average = "micro" }), 0.75)
  end)

  it("a class absent from targets and predictions: zero_division per class, left out of the single-label averages", function()
    local x = miles.tensor({ { 2, 1, 0 }, { 1, 2, 0 } }, f32)
    local y = miles.tensor({ 1, 2 }, i64)
    local r = M.Accumulator({ classes = 3 }):add(x, y):result()
    assert.are.same({ 1, 1, 0 }, r.f1)
    assert.are.same({ 1, 1, 0 }, r.precision)
    assert.are.equal(1, r.f1_macro)
    r = M.Accumulator({ classes = 3, zero_division = 1 }):add(x, y):result()
    assert.are.same({ 1, 1, 1 }, r.f1)
  end)

  it("multi-label: every column is averaged, an empty one reads zero_division", function()
    -- sigmoid(0) = 0.5 is not > 0.5: logit 0 is negative
    local x = miles.tensor({ { 3, -3, 0 }, { 3, 3, -1 } }, f32)
    local y = miles.tensor({ { 1, 0, 0 }, { 1, 1, 0 } }, f32)
    local r = M.Accumulator({ classes = 3, multilabel = true }):add(x, y):result()
    assert.are.same({ 1, 1, 0 }, r.f1)
    close(r.f1_macro, 2 / 3)
    close(r.f1_micro, 1)
    close(r.f1_samples, 1)
    close(r.accuracy, 1) -- subset accuracy
    assert.is_nil(r.confusion)
    r = M.Accumulator({ classes = 3, multilabel = true, zero_division = 1 }):add(x, y):result()
    close(r.f1_macro, 1)
  end)

  it("multi-label thresholds: probabilities, another threshold, 0/1 predictions", function()
    local p = miles.tensor({ { 0.9, 0.4, 0.2 }, { 0.35, 0.6, 0.1 } }, { dtype = "float64" })
    local y = miles.tensor({ { 1, 1, 0 }, { 0, 1, 0 } }, i64)
    local o = { multilabel = true, probs = true, average = "micro" }
    -- > 0.5: tp 2, fp 0, fn 1
    close(M.f1(p, y, o), 4 / 5)
    o.threshold = 0.3 -- tp 3, fp 1, fn 0
    close(M.f1(p, y, o), 6 / 7)
    local hard = miles.tensor({ { true, true, false }, { true, true, false } })
    close(M.f1(hard, y, { multilabel = true, average = "micro" }), 6 / 7)
    close(M.accuracy(hard, y, { multilabel = true }), 0.5)
  end)

  it("samples average of a sample with no true and no predicted label is zero_division", function()
    local x = miles.tensor({ { -5, -5 }, { 5, -5 } }, f32)
    local y = miles.tensor({ { 0, 0 }, { 1, 0 } }, f32)
    close(M.f1(x, y, { multilabel = true, average = "samples" }), 0.5)
    close(M.f1(x, y, { multilabel = true, average = "samples", zero_division = 1 }), 1)
  end)
end)

describe("metrics.Accumulator", function()
  local x = miles.tensor({ { 2, 1, 0 }, { 0, 1, 2 }, { 1, 2, 0 } }, { dtype = "float32" })
  local y = miles.tensor({ 1, 3, 1 }, { dtype = "int64" })

  it("reset forgets the samples; add returns the accumulator", function()
    local acc = M.Accumulator({ classes = 3, topk = { 1, 2 } })
    assert.are.equal(acc, acc:add(x, y))
    assert.are.equal(3, acc:count())
    local first = acc:result()
    close(first.top2, 1)
    acc:reset()
    assert.are.equal(0, acc:count())
    raises(function() acc:result() end, "Accumulator:result: no samples were added")
    same_results(first, acc:add(x, y):result(), "after reset")
  end)

  it("closes with <close> and refuses use afterwards; tostring", function()
    local acc = M.Accumulator({ classes = 3 })
    assert.truthy(tostring(acc):find("metrics.Accumulator(classes=3, single-label, n=0)", 1, true))
    do
      local a <close> = acc
    end
    raises(function() acc:add(x, y) end, "Accumulator:add: the accumulator was closed")
    acc:close() -- twice is fine
    assert.truthy(tostring(acc):find("closed", 1, true))
  end)

  it("keeps a confusion matrix up to 4096 classes unless told", function()
    assert.is_nil(M.Accumulator({ classes = 3, confusion = false }):add(x, y):result().confusion)
    local big = M.Accumulator({ classes = 5000 })
    local xb = miles.zeros(2, 5000)
    local yb = miles.tensor({ 1, 5000 }, { dtype = "int64" })
    assert.is_nil(big:add(xb, yb):result().confusion)
  end)

  it("a failed add changes nothing", function()
    local acc = M.Accumulator({ classes = 3 }):add(x, y)
    local before = acc:result()
    raises(function() acc:add(x, miles.tensor({ 1, 2, 4 }, { dtype = "int64" })) end,
      "Accumulator:add: target 4 at row 3 is out of range [1, 3]")
    assert.are.equal(3, acc:count())
    same_results(before, acc:result(), "after a failed add")
  end)
end)

describe("metrics errors", function()
  local x = miles.tensor({ { 2, 1, 0 }, { 0, 1, 2 } }, { dtype = "float32" })
  local y = miles.tensor({ 1, 3 }, { dtype = "int64" })

  it("name the function, the value and the position (1-based)", function()
    raises(function() M.accuracy(x, miles.tensor({ 0, 1 }, { dtype = "int64" })) end,
      "metrics.accuracy: target 0 at row 1 is out of range [1, 3]")
    raises(function() M.accuracy(x, miles.tensor({ 1, 2, 3 }, { dtype = "int64" })) end,
      "metrics.accuracy: scores must be [N, C] = [3, 3] for [3] targets, got [2,3]")
    raises(function() M.accuracy(x, miles.tensor({ 1, 2 }, { dtype = "float32" })) end,
      "metrics.accuracy: single-label targets must be int64 class indices of shape [N], got float32 [2]")
    raises(function() M.f1(x, miles.tensor({ { 1, 0, 0 }, { 0, 1, 0 } }, { dtype = "float32" })) end,
      "multi-hot targets need multilabel = true")
    raises(function() M.f1(x, miles.tensor({ { 1, 0, 0.5 }, { 0, 1, 0 } }), { multilabel = true }) end,
      "metrics.f1: multi-hot targets must be 0 or 1, got 0.5 at [1, 3]")
    raises(function() M.f1(x, y, { average = "binary" }) end,
      "metrics.f1: average must be \"micro\", \"macro\", \"weighted\" or \"samples\", got \"binary\"")
    raises(function() M.f1(x, y, { avg = "micro" }) end, "metrics.f1: unknown option 'avg'")
    raises(function() M.f1(x, y, { average = 1 }) end, "metrics.f1: 'average' must be a string, got number")
    raises(function() M.f1(x, y, { zero_division = 0.5 }) end,
      "metrics.f1: zero_division must be 0 or 1, got 0.5")
    raises(function() M.f1(x, y, { multilabel = true, threshold = 2,
      }) end, "metrics.f1: threshold must be in [0, 1], got 2")
    raises(function() M.topk(x, y, 0) end, "metrics.topk: top-k needs k >= 1, got 0")
    raises(function() M.confusion(miles.tensor({ 1, 2 }, { dtype = "int64" }), y) end,
      "metrics.confusion: pass the number of classes")
    raises(function() M.confusion(miles.tensor({ 1, 5 }, { dtype = "int64" }), y, 3) end,
      "metrics.confusion: predicted class 5 at row 2 is out of range [1, 3]")
    raises(function() M.topk(miles.tensor({ 1, 2 }, { dtype = "int64" }), y, 2, { classes = 3 }) end,
      "metrics.topk: top-k accuracy needs scores [N, C], not predicted classes")
    raises(function() M.accuracy(x:narrow(1, 1, 0), y:narrow(1, 1, 0)) end,
      "metrics.accuracy: no samples were added")
  end)

  it("the accumulator's options are checked", function()
    raises(function() M.Accumulator({}) end,
      "metrics.Accumulator: 'classes' must be an integer, got nil")
    raises(function() M.Accumulator({ classes = 2.5 }) end,
      "metrics.Accumulator: 'classes' must be an integer, got a fraction")
    raises(function() M.Accumulator({ classes = 3, topk = { 1, 1.5 } }) end,
      "metrics.Accumulator: 'topk[2]' must be an integer, got a fraction")
    assert.are.equal(3, M.Accumulator({ classes = 3.0, topk = 2.0 }):add(
      miles.zeros(1, 3), miles.tensor({ 1 }, { dtype = "int64" })):result().classes)
    raises(function() M.Accumulator({ classes = 0 }) end,
      "metrics.Accumulator: the number of classes must be in [1, 16777216], got 0")
    raises(function() M.Accumulator({ classes = 3, multilabel = true, topk = { 2 } }) end,
      "metrics.Accumulator: top-k accuracy needs single-label targets")
    raises(function() M.Accumulator({ classes = 3, multilabel = true, confusion = true }) end,
      "metrics.Accumulator: a confusion matrix needs single-label targets")
    raises(function() M.Accumulator({ classes = 3, top_k = 2 }) end,
      "metrics.Accumulator: unknown option 'top_k'")
    raises(function() M.Accumulator({ classes = 20000, confusion = true }) end,
      "metrics.Accumulator: a confusion matrix of 20000 classes would need 3.2 GB")
  end)
end)
