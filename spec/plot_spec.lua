-- miles.plot: sparklines on known inputs, reading logs back, and the Fig. 2 PNG
-- (written by gnuplot, read back with miles.io.read_png).
local miles = require "miles"
local plot = require "miles.plot"
local log = require "miles.log"
local H = require "helpers"

local NAN = 0 / 0

-- A three-epoch MILES-like history: image dominant, its rate halved after epoch 1.
local function history()
  return {
    { epoch = 1, u_audio = 0.05, u_image = 0.4, delta = 0.35, action = "slow_2", lr_audio = 1e-3,
      lr_image = 1e-3, lr_fusion = 1e-3, val_loss_fused = 1.2, val_accuracy_fused = 0.7, val_accuracy_audio = 0.3,
      val_accuracy_image = 0.6 },
    { epoch = 2, u_audio = 0.1, u_image = 0.3, delta = 0.2, action = "none", lr_audio = 1e-3,
      lr_image = 5e-4, lr_fusion = 1e-3, val_accuracy_fused = 0.8, val_accuracy_audio = 0.4,
      val_accuracy_image = 0.7 },
    { epoch = 3, u_audio = 0.1, u_image = NAN, delta = 0.1, action = "none", lr_audio = 1e-3,
      lr_image = 1e-3, lr_fusion = 1e-3, val_accuracy_fused = 0.85, val_accuracy_audio = 0.5,
      val_accuracy_image = 0.75 },
  }
end

describe("plot.sparkline", function()
  it("maps the range onto the eight blocks", function()
    assert.are.equal("▁▂▃▄▅▆▇█ min 0 max 7", plot.sparkline({ 0, 1, 2, 3, 4, 5, 6, 7 }))
    -- (-0.375 - -1) / 1.25 * 7 = 3.5 rounds up to level 4 (0-based): the fifth block
    assert.are.equal("█▅▁ min -1 max 0.25", plot.sparkline({ 0.25, -0.375, -1 }))
  end)

  it("shows NaN and infinities as blanks, a constant as mid blocks, nothing as 'no values'", function()
    assert.are.equal("▁ █ min 1 max 3", plot.sparkline({ 1, NAN, 3 }))
    assert.are.equal("▄ ▄ min 2 max 2", plot.sparkline({ 2, math.huge, 2 }))
    assert.are.equal("   " .. " no values", plot.sparkline({ NAN, NAN, -math.huge }))
    assert.are.equal(" no values", plot.sparkline({}))
  end)

  it("reads a column of a history or a trainer", function()
    assert.are.equal("▁██ min 0.05 max 0.1", plot.sparkline(history(), "u_audio"))
    assert.are.equal("█▁  min 0.3 max 0.4", plot.sparkline({ history = history() }, "u_image"))
  end)

  it("names a missing column and a value that is not a number", function()
    H.raises(function() plot.sparkline(history(), "u_text") end, "no column 'u_text'", "u_audio")
    H.raises(function() plot.sparkline({ 1, "x" }) end, "value 2 is x, not a number")
  end)
end)

describe("plot.columns and plot.load", function()
  it("lists a history's columns with epoch first, a trainer's in its own order", function()
    assert.are.same({ "epoch", "action", "delta", "lr_audio", "lr_fusion", "lr_image", "u_audio", "u_image",
      "val_accuracy_audio", "val_accuracy_fused", "val_accuracy_image", "val_loss_fused" }, plot.columns(history()))
    assert.are.same({ "epoch", "u_x" }, plot.columns({ history = {}, columns = { "epoch", "u_x" } }))
  end)

  it("reads a run's log.csv back (empty cells NaN, quoted text kept)", function()
    local dir = H.tmpdir()
    local cols = { "epoch", "u_audio", "action" }
    local logger = log.Logger(dir, cols)
    logger:row({ epoch = 1, u_audio = 0.25, action = 'slow, "1"' })
    logger:row({ epoch = 2, u_audio = NAN })
    local rows, got = plot.load(dir)
    assert.are.same(cols, got)
    assert.are.same(cols, plot.columns(dir .. "/log.csv"))
    assert.are.equal(2, #rows)
    assert.are.equal(0.25, rows[1].u_audio)
    assert.are.equal('slow, "1"', rows[1].action)
    assert.is_true(rows[2].u_audio ~= rows[2].u_audio)
    assert.are.equal("▄  min 0.25 max 0.25", plot.sparkline(dir, "u_audio"))
    H.rmdir(dir)
    H.raises(function() plot.load(dir) end, "cannot read " .. dir)
  end)
end)

H.describe_needing("gnuplot", describe, pending)("plot.fig2", function()
  it("writes a PNG of the requested size (names with quotes and spaces too)", function()
    local dir = H.tmpdir()
    local path = dir .. "/it's fig 2.png"
    assert.are.equal(path, plot.fig2(history(), path, { tau = 0.2, title = "a 'quoted' title", width = 640,
      height = 720 }))
    local img = miles.io.read_png(path)
    assert.are.same({ 3, 720, 640 }, img:shape())
    -- not a blank picture: both white and dark pixels
    assert.are.equal(255, img:max():item())
    assert.is_true(img:min():item() < 64)
    H.rmdir(dir)
  end)

  it("draws a run whose rule logs no u (a vanilla run) with the default size", function()
    local dir = H.tmpdir()
    local rows = history()
    for _, r in ipairs(rows) do r.u_audio, r.u_image, r.delta = NAN, NAN, NAN end
    plot.fig2({ history = rows, rule = { name = "vanilla" } }, dir .. "/v.png")
    assert.are.same({ 3, 1000, 900 }, miles.io.read_png(dir .. "/v.png"):shape())
    H.rmdir(dir)
  end)

  it("names the columns a history lacks", function()
    local rows = { { epoch = 1, lr_audio = 1e-3, val_accuracy_fused = 0.5 } }
    H.raises(function() plot.fig2(rows, "x.png") end, "plot.fig2: the history lacks column(s) u_<modality>, delta")
    H.raises(function() plot.fig2({}, "x.png") end, "plot.fig2: the history has no rows")
    H.raises(function() plot.fig2(history(), "x.png", { tau = "0.2" }) end, "tau must be a number, got 0.2")
    H.raises(function() plot.fig2(history(), "x.png", { metric = "f1_macro" }) end, "lacks column(s) val_f1_macro_fused")
    -- the validation loss is not the metric
    local only_loss = { { epoch = 1, u_a = 0.1, delta = 0, lr_a = 1e-3, val_loss_fused = 0.5 } }
    H.raises(function() plot.fig2(only_loss, "x.png") end, "lacks column(s) val_<metric>_fused")
  end)

  it("reports gnuplot's own message when it fails", function()
    H.raises(function() plot.fig2(history(), "/nonexistent-dir/x.png") end,
      "plot.fig2: gnuplot failed writing /nonexistent-dir/x.png", "cannot open file")
  end)
end)
