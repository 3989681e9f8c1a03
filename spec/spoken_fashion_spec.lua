-- The embedded data set's builder (lua/miles/data/spoken_fashion.lua) at a tiny
-- size: shapes, labels, splits, determinism for a seed, the cache reused.
local miles = require "miles"
local H = require "helpers"
local sf = require "miles.data.spoken_fashion"

-- 3 utterances per class (1 for the test split), 30 + 10 + 10 pairs.
local TINY = { train = 30, val = 10, test = 10, utterances = 3, test_utterances = 1, quiet = true }

local function tiny(dir, extra)
  local o = { cache_dir = dir }
  for k, v in pairs(TINY) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return sf.load(o)
end

local function bytes_of(t)
  return miles.no_grad(function() return t:contiguous():totable() end)
end

H.describe_needing("espeak-ng", describe, pending)("spoken_fashion", function()
  local dir_a, dir_b, ds
  setup(function()
    dir_a, dir_b = H.tmpdir(), H.tmpdir()
    ds = tiny(dir_a)
  end)
  teardown(function()
    H.rmdir(dir_a)
    H.rmdir(dir_b)
  end)

  it("has aligned audio log-mel spectrograms, Fashion-MNIST images and labels", function()
    local a, x = ds.modalities.audio, ds.modalities.image
    assert.are.same({ 50, 1, 32, 32 }, a:shape())   -- 32 mels x 32 frames (1 s, hop 512, centred)
    assert.are.equal("float32", a:dtype())
    assert.are.same({ 50, 1, 28, 28 }, x:shape())
    assert.are.equal("uint8", x:dtype())
    assert.are.equal(10, #ds.classes)
    assert.are.equal("ankle boot", ds.classes[10])
    local lo, hi = ds.labels:min():item(), ds.labels:max():item()
    assert.is_true(lo >= 1 and hi <= 10, ("labels in %d..%d"):format(lo, hi))
    -- log-mel in dB with top_db 80: at most 80 dB below each clip's peak
    local span = (a:amax({ 2, 3, 4 }) - a:amin({ 2, 3, 4 })):max():item()
    assert.is_true(span <= 80 + 1e-3, "dB span " .. span)
  end)

  it("has train/val/test splits of the asked sizes, test images from the test file", function()
    assert.are.equal(30, #ds:split("train"))
    assert.are.equal(10, #ds:split("val"))
    assert.are.equal(10, #ds:split("test"))
    local idx = ds:split("test").indices
    assert.are.equal(41, idx[1]:item())
  end)

  it("is built the same for the same seed, differently for another", function()
    local again = tiny(dir_b)
    assert.are.same(bytes_of(ds.labels), bytes_of(again.labels))
    assert.are.equal(0, (ds.modalities.audio - again.modalities.audio):abs():max():item())
    assert.are.equal(0, (ds.modalities.image:to("int64") - again.modalities.image:to("int64")):abs():max():item())
    local other = tiny(dir_b, { seed = 1 })
    assert.are_not.same(bytes_of(ds.labels), bytes_of(other.labels))
  end)

  it("reuses the cache on a second load", function()
    local manifest = dir_a .. "/spoken-fashion-easy-0/manifest.json"
    local before = H.read_file(manifest)
    local again = tiny(dir_a)
    assert.are.equal(before, H.read_file(manifest))
    assert.are.same(bytes_of(ds.labels), bytes_of(again.labels))
  end)

  it("rejects an unknown preset and sizes Fashion-MNIST cannot give", function()
    local err = H.error_of(sf.load, { preset = "medium", cache_dir = dir_a })
    assert.matches("unknown preset 'medium'", err)
    err = H.error_of(tiny, dir_a, { train = 70000 })
    assert.matches("asks for 70000%+10 training", err)
  end)
end)
