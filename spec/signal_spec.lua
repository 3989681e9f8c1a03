-- miles.signal: STFT, mel filterbanks, mel spectrograms, decibels and MFCCs
-- against references (spec/fixtures/make_signal_fixtures.py: torch.stft,
-- scipy.signal.stft, numpy mel filterbanks, torchaudio's recipes; the cases are
-- listed in spec/fixtures/signal/cases.lua), in float32 (KISS FFT) and float64
-- (our own DFT); then edge cases, argument errors and the Lua helpers.
local miles = require "miles"
local H = require "helpers"
local S = require "miles.signal"

local CASES = dofile(H.fixtures .. "signal/cases.lua")

local function fx(name)
  return H.fixture("signal/" .. name)
end

--- Largest |x| as a number.
local function absmax(t)
  return miles.no_grad(function() return t:to("float64"):abs():max():item() end)
end

--- got ~ ref with |got - ref| <= rtol * |ref| + rtol * max|ref|: float32 FFT
-- errors scale with the spectrum's largest value, not with each bin's own.
local function check(got, ref, rtol, what)
  H.assert_close(got, ref, rtol, rtol * math.max(absmax(ref), 1e-30), what)
end

--- A copy of a case's options, with the user window loaded when it has one.
local function opts_of(case)
  local o = {}
  for k, v in pairs(case.opts) do o[k] = v end
  if case.window_file then o.window = fx(case.window_file) end
  return o
end

--- Tolerances: float32 paths (KISS FFT, float32 sums) to ~1e-4 of the largest
-- value; float64 paths to ~1e-10 when the reference was saved in float64, and
-- to the float32 rounding of the reference (1e-6) otherwise.
local function tol64(case)
  return case.f64 and 1e-10 or 1e-6
end

local function shape_of(t)
  return table.concat(t:shape(), "x")
end

describe("signal.stft against torch.stft", function()
  for _, c in ipairs(CASES) do
    if c.kind == "stft" then
      it(c.name .. " (float32, KISS FFT)", function()
        local y = S.stft(fx("x_" .. c.input), opts_of(c))
        assert.equal("float32", y:dtype())
        check(y, fx("stft_" .. c.name), 1e-4, c.name)
      end)
      it(c.name .. " (float64)", function()
        local y = S.stft(fx("x_" .. c.input):to("float64"), opts_of(c))
        assert.equal("float64", y:dtype())
        check(y, fx("stft_" .. c.name), tol64(c), c.name)
      end)
    end
  end
end)

describe("signal.stft against scipy.signal.stft", function()
  for _, c in ipairs(CASES) do
    if c.kind == "scipy" then
      for _, dt in ipairs({ "float32", "float64" }) do
        it(c.name .. " (" .. dt .. "; scipy divides by the window's sum)", function()
          local o = opts_of(c)
          local wsum = S.window(o.window, o.n_fft, { dtype = "float64" }):sum():item()
          local y = S.stft(fx("x_" .. c.input):to(dt), o):to("float64") / wsum
          check(y, fx("scipy_" .. c.name), dt == "float32" and 1e-4 or 1e-10, c.name)
        end)
      end
    end
  end
end)

describe("signal.mel_filterbank against the numpy reference", function()
  for _, c in ipairs(CASES) do
    if c.kind == "fb" then
      for _, dt in ipairs({ "float32", "float64" }) do
        it(c.name .. " (" .. dt .. ")", function()
          local o = opts_of(c)
          o.dtype = dt
          local fb = S.mel_filterbank(o)
          assert.equal(dt, fb:dtype())
          assert.equal(c.opts.n_mels .. "x" .. c.opts.n_freqs, shape_of(fb))
          local rtol = (dt == "float32" or not c.f64) and 1e-6 or 1e-12
          check(fb, fx("fb_" .. c.name), rtol, c.name)
        end)
      end
    end
  end
end)

describe("signal.mel_spectrogram and signal.mfcc against torchaudio's recipes", function()
  for _, c in ipairs(CASES) do
    if c.kind == "melspec" or c.kind == "mfcc" then
      local fn = c.kind == "melspec" and "mel_spectrogram" or "mfcc"
      local ref = (c.kind == "melspec" and "melspec_" or "mfcc_") .. c.name
      it(fn .. " " .. c.name .. " (float32)", function()
        check(S[fn](fx("x_" .. c.input), opts_of(c)), fx(ref), 1e-4, c.name)
      end)
      it(fn .. " " .. c.name .. " (float64)", function()
        check(S[fn](fx("x_" .. c.input):to("float64"), opts_of(c)), fx(ref), 1e-9, c.name)
      end)
    end
  end
end)

describe("signal.amplitude_to_db against torchaudio's formula", function()
  for _, c in ipairs(CASES) do
    if c.kind == "db" then
      it(c.name .. " (float64)", function()
        local y = S.amplitude_to_db(fx(c.input), c.opts)
        H.assert_close(y, fx("db_" .. c.name), 1e-12, 1e-10, c.name)
      end)
      it(c.name .. " (float32)", function()
        local y = S.amplitude_to_db(fx(c.input):to("float32"), c.opts)
        assert.equal("float32", y:dtype())
        H.assert_close(y, fx("db_" .. c.name), 1e-5, 1e-4, c.name)
      end)
    end
  end

  it("floors each spectrogram of a batch at its own max - top_db", function()
    local x = fx("dbin_b")
    local all = S.amplitude_to_db(x, { top_db = 40 })
    for i = 1, x:size(1) do
      H.assert_close(all[i], S.amplitude_to_db(x[i], { top_db = 40 }), 0, 0, "clip " .. i)
    end
    local quiet = all[2]
    assert.is_true(math.abs(quiet:max():item() - quiet:min():item() - 40) < 1e-9)
  end)

  it("keeps NaN and ignores it for the max", function()
    local x = miles.tensor({ { 1, 0 / 0 }, { 100, 1e-12 } }, { dtype = "float64" })
    local y = S.amplitude_to_db(x, { top_db = 30 })
    assert.is_true(y[1][2]:item() ~= y[1][2]:item())
    assert.near(20, y[2][1]:item(), 1e-12)
    assert.near(-10, y[2][2]:item(), 1e-12)
  end)
end)

describe("signal.stft shapes and edge cases", function()
  it("gives the MILES paper's CREMA-D spectrogram 257x299 for 3 s at 16 kHz", function()
    -- n_fft 512, hop 159 (overlap 353), no centre padding: scipy.signal.spectrogram's framing
    local x = miles.randn(48000)
    local y = S.stft(x, { n_fft = 512, hop_length = 159, center = false, output = "magnitude" })
    assert.equal("257x299", shape_of(y))
    assert.equal("257x302x2", shape_of(S.stft(x, { n_fft = 512, hop_length = 159 })))
  end)

  it("finds a cosine in its bin with the expected height", function()
    local n, k0 = 64, 5
    local v = {}
    for i = 1, 256 do v[i] = math.cos(2 * math.pi * k0 * (i - 1) / n) end
    local x = miles.tensor(v, { dtype = "float64" })
    local y = S.stft(x, { n_fft = n, hop_length = n, window = "rect", center = false,
      output = "magnitude" })
    for f = 1, y:size(2) do
      assert.near(n / 2, y[k0 + 1][f]:item(), 1e-9)
      assert.near(0, y[k0 + 3][f]:item(), 1e-9)
    end
  end)

  it("takes a signal shorter than n_fft with center padding", function()
    local x = miles.randn(50)
    local y = S.stft(x, { n_fft = 128, hop_length = 16, pad_mode = "constant" })
    assert.equal("65x4x2", shape_of(y))
    local r = S.stft(miles.randn(70), { n_fft = 128, hop_length = 16 }) -- reflect: 64 < 70
    assert.equal("65x5x2", shape_of(r))
  end)

  it("rejects a signal too short for reflect padding or for one frame", function()
    local x = miles.randn(50)
    local e = H.error_of(S.stft, x, { n_fft = 128 })
    assert.truthy(e:find("stft: reflect padding of 64 samples", 1, true), e)
    assert.truthy(e:find("got 50 samples", 1, true), e)
    e = H.error_of(S.stft, x, { n_fft = 128, center = false })
    assert.truthy(e:find("stft: the signal has 50 samples", 1, true), e)
    assert.truthy(e:find("n_fft = 128", 1, true), e)
    e = H.error_of(S.stft, miles.randn(10), { n_fft = 32, pad_mode = "circular" })
    assert.truthy(e:find("circular padding of 16 samples", 1, true), e)
  end)

  it("rejects an empty signal and accepts an empty batch", function()
    local e = H.error_of(S.stft, miles.zeros(2, 0), { n_fft = 4, pad_mode = "constant" })
    assert.truthy(e:find("stft: the signal is empty (0 samples)", 1, true), e)
    assert.equal("0x3x17", shape_of(S.stft(miles.zeros(0, 16), { n_fft = 4, output = "power" })))
  end)

  it("frames a signal exactly n_fft long once without padding", function()
    local y = S.stft(miles.randn(64), { n_fft = 64, hop_length = 1000, center = false })
    assert.equal("33x1x2", shape_of(y))
  end)

  it("gives each signal of a batch (any leading dims) its own frames", function()
    local x = miles.randn(2, 3, 4000)
    local o = { n_fft = 512, hop_length = 160, output = "power" }
    local y = S.stft(x, o) -- big enough to run on several threads
    assert.equal("2x3x257x26", shape_of(y))
    for i = 1, 2 do
      for j = 1, 3 do
        H.assert_close(y[i][j], S.stft(x[i][j], o), 0, 0, "signal " .. i .. "," .. j)
      end
    end
  end)

  it("takes win_length from a window tensor given without one", function()
    local x = miles.randn(500)
    local w = S.window("hamming", 40)
    H.assert_close(S.stft(x, { n_fft = 64, window = w }),
      S.stft(x, { n_fft = 64, win_length = 40, window = "hamming" }), 1e-5, 1e-5) -- float32 window
  end)

  it("reads non-contiguous inputs", function()
    local x = miles.randn(1000, 2):t()
    local o = { n_fft = 64, hop_length = 16 }
    H.assert_close(S.stft(x, o), S.stft(x:contiguous(), o), 0, 0)
  end)

  it("computes values of tensors that require grad, without history", function()
    local x = miles.randn(2000)
    x.requires_grad = true
    local y = S.stft(x, { n_fft = 256, hop_length = 64 })
    assert.is_false(y.requires_grad)
    x.requires_grad = false
    H.assert_close(y, S.stft(x, { n_fft = 256, hop_length = 64 }), 0, 0)
    x.requires_grad = true
    assert.is_false(S.mel_spectrogram(x, { n_fft = 256, n_mels = 16 }).requires_grad)
    assert.is_false(S.mfcc(x, { n_fft = 256, n_mels = 16, n_mfcc = 8 }).requires_grad)
    assert.is_false(S.amplitude_to_db(x:abs()).requires_grad)
    local w = S.window("hann", 256)
    w.requires_grad = true
    assert.is_false(S.stft(x, { n_fft = 256, window = w }).requires_grad)
  end)

  it("magnitude and power of the complex output equal the direct outputs", function()
    local x = miles.randn(3000)
    local z = S.stft(x, { n_fft = 256, hop_length = 100 })
    H.assert_close(S.magnitude(z), S.stft(x, { n_fft = 256, hop_length = 100, output = "magnitude" }),
      1e-6, 1e-6)
    H.assert_close(S.power(z), S.stft(x, { n_fft = 256, hop_length = 100, output = "power" }),
      1e-6, 1e-5)
  end)

  it("reuses FFT plans across calls and can drop them", function()
    S.stft(miles.randn(1000), { n_fft = 200 })
    assert.is_true(S.fft_cache_size() >= 1)
    S.fft_cache_clear()
    assert.equal(0, S.fft_cache_size())
    S.stft(miles.randn(1000), { n_fft = 200 })
    assert.is_true(S.fft_cache_size() >= 1)
  end)

  it("handles the tiny lengths n_fft = 1, 2 and 3", function()
    local x = miles.tensor({ 1, 2, 3, 4 }, { dtype = "float32" })
    local y1 = S.stft(x, { n_fft = 1, hop_length = 1, window = "rect", center = false })
    H.assert_close(y1:select(3, 1), x:reshape(1, 4), 0, 0)
    local y2 = S.stft(x, { n_fft = 2, hop_length = 2, window = "rect", center = false })
    H.assert_close(y2:select(3, 1), { { 3, 7 }, { -1, -1 } }, 1e-6, 1e-6)
    local y3 = S.stft(x:to("float64"), { n_fft = 3, hop_length = 1, window = "rect", center = false })
    assert.equal("2x2x2", shape_of(y3))
    assert.near(6, y3[1][1][1]:item(), 1e-12)
    assert.near(-1.5, y3[2][1][1]:item(), 1e-12)
    assert.near(math.sqrt(3) / 2, y3[2][1][2]:item(), 1e-12)
  end)
end)

describe("signal functions reject bad arguments", function()
  local x = miles.randn(1000)
  local function expect(fn, args, ...)
    local e = H.error_of(fn, table.unpack(args))
    for _, s in ipairs({ ... }) do
      assert.truthy(e:find(s, 1, true), "expected '" .. s .. "' in: " .. e)
    end
  end

  it("stft: sizes, names and types", function()
    expect(S.stft, { x, {} }, "stft: option 'n_fft' is required")
    expect(S.stft, { x, { n_fft = 0 } }, "stft: n_fft must be 1..", "got 0")
    expect(S.stft, { x, { n_fft = -4 } }, "stft: n_fft must be", "got -4")
    expect(S.stft, { x, { n_fft = 1e9 } }, "stft: n_fft must be")
    expect(S.stft, { x, { n_fft = 64.5 } }, "stft: option 'n_fft' must be an integer", "64.5")
    expect(S.stft, { x, { n_fft = 64, hop_length = 0 } }, "stft: option 'hop_length' must be >= 1, got 0")
    expect(S.stft, { x, { n_fft = 64, win_length = 65 } }, "stft: win_length must be 1..n_fft (64), got 65")
    expect(S.stft, { x, { n_fft = 64, win_length = 0 } }, "stft: option 'win_length' must be >= 1, got 0")
    expect(S.stft, { x, { n_fft = 64, window = "hanning" } }, "stft: option 'window' must be one of hann, hamming, rect",
      '"hanning"')
    expect(S.stft, { x, { n_fft = 64, win_length = 64, window = miles.ones(32) } },
      "stft: window has 32 values but win_length is 64")
    expect(S.stft, { x, { n_fft = 64, window = miles.ones(8, 8) } }, "stft: window must be a 1-D float tensor")
    expect(S.stft, { x, { n_fft = 64, pad_mode = "mirror" } }, "stft: option 'pad_mode' must be one of", '"mirror"')
    expect(S.stft, { x, { n_fft = 64, output = "db" } }, "stft: option 'output' must be one of complex, magnitude, power")
    expect(S.stft, { x, { n_fft = 64, center = 1 } }, "stft: option 'center' must be true or false")
    expect(S.stft, { x, { n_fft = 64, hop = 3 } }, "stft: unknown option 'hop'")
    expect(S.stft, { x, 64 }, "stft: options must be a table, got number")
    expect(S.stft, { miles.ones(10, { dtype = "int64" }), { n_fft = 4 } },
      "stft: the input must be float32 or float64, got int64")
    expect(S.stft, { miles.tensor(1.5), { n_fft = 4 } }, "stft: expected a signal [T]")
    expect(S.stft, { miles.randn(1, 1, 1, 1, 1, 1, 8), { n_fft = 4 } }, "stft: expected a signal", "at most 6 dims")
    local e = H.error_of(S.stft, nil, { n_fft = 4 })
    assert.truthy(e:find("Tensor expected, got nil", 1, true), e)
  end)

  it("window, magnitude and power", function()
    expect(S.window, { "hann", 0 }, "window: length must be 1..", "got 0")
    expect(S.window, { "kaiser", 8 }, "invalid option 'kaiser'")
    expect(S.window, { "hann", 8, { dtype = "int64" } }, "window: option 'dtype' must be one of")
    expect(S.magnitude, { miles.randn(4, 3) }, "magnitude: expected a complex tensor [..., 2]", "[4,3]")
    expect(S.power, { miles.randn(4, 3) }, "power: expected a complex tensor [..., 2]")
  end)

  it("mel_filterbank and mel_spectrogram", function()
    expect(S.mel_filterbank, { {} }, "mel_filterbank: option 'n_freqs' is required")
    expect(S.mel_filterbank, { { n_freqs = 0 } }, "mel_filterbank: n_freqs must be 1..", "got 0")
    expect(S.mel_filterbank, { { n_freqs = 257, n_mels = 0 } }, "mel_filterbank: n_mels must be 1..", "got 0")
    expect(S.mel_filterbank, { { n_freqs = 257, sample_rate = -1 } }, "mel_filterbank: sample_rate must be positive, got -1")
    expect(S.mel_filterbank, { { n_freqs = 257, fmin = -5 } }, "mel_filterbank: fmin must be >= 0 Hz, got -5")
    expect(S.mel_filterbank, { { n_freqs = 257, fmin = 5000, fmax = 4000 } },
      "mel_filterbank: fmax (4000 Hz) must be above fmin (5000 Hz)")
    expect(S.mel_filterbank, { { n_freqs = 257, fmin = 9000 } }, "fmax (8000 Hz) must be above fmin (9000 Hz)")
    expect(S.mel_filterbank, { { n_freqs = 257, scale = "bark" } }, "mel_filterbank: option 'scale' must be one of htk, slaney")
    expect(S.mel_filterbank, { { n_freqs = 257, norm = "l2" } }, "mel_filterbank: option 'norm' must be \"slaney\"")
    expect(S.mel_spectrogram, { x, { n_fft = 256, power = 3 } }, "mel_spectrogram: option 'power' must be 1")
    expect(S.mel_spectrogram, { x, { n_fft = 256, n_mels = 0 } }, "mel_spectrogram: n_mels must be")
    expect(S.mel_spectrogram, { x, { n_fft = 256, hop_length = -1 } }, "mel_spectrogram: option 'hop_length' must be >= 1")
    expect(S.mel_spectrogram, { miles.randn(100), { n_fft = 400 } }, "mel_spectrogram: reflect padding of 200 samples")
    expect(S.mel_spectrogram, { x, { n_fft = 256, output = "power" } }, "mel_spectrogram: unknown option 'output'")
    expect(S.apply_filterbank, { miles.randn(4, 10), miles.randn(2, 11, 5) },
      "apply_matrix: cannot apply a matrix of shape [4,10] to a spectrogram of shape [2,11,5]")
  end)

  it("amplitude_to_db, dct_matrix and mfcc", function()
    expect(S.amplitude_to_db, { x:abs(), { amin = 0 } }, "amplitude_to_db: amin must be positive, got 0")
    expect(S.amplitude_to_db, { x:abs(), { top_db = -1 } }, "amplitude_to_db: top_db must be >= 0, got -1")
    expect(S.amplitude_to_db, { x:abs(), { multiplier = 0 } }, "amplitude_to_db: multiplier must be a positive number")
    expect(S.amplitude_to_db, { x:abs(), { ref = -2 } }, "amplitude_to_db: ref must be positive, got -2")
    expect(S.amplitude_to_db, { x:abs(), { top_db = "80" } }, "amplitude_to_db: option 'top_db' must be a number or false")
    expect(S.dct_matrix, { 20, 10 }, "dct_matrix: expected 1 <= n_out <= n_in", "n_out 20, n_in 10")
    expect(S.dct_matrix, { 5, 10, { norm = "l1" } }, "dct_matrix: option 'norm' must be \"ortho\"")
    expect(S.mfcc, { x, { n_fft = 256, n_mels = 16, n_mfcc = 20 } }, "mfcc: n_mfcc must be 1..n_mels (16), got 20")
    expect(S.mfcc, { x, { n_fft = 256, n_mels = 16, n_mfcc = 8, mel_norm = "ortho" } },
      "mfcc: option 'mel_norm' must be \"slaney\"")
    expect(S.mfcc, { x, { n_fft = 256, n_mels = 16, n_mfcc = 8, top_db = -3 } }, "mfcc: top_db must be >= 0, got -3")
  end)
end)

describe("signal helpers", function()
  it("window: periodic and symmetric hann and hamming, rect", function()
    local w = S.window("hann", 4, { dtype = "float64" })
    H.assert_close(w, { 0, 0.5, 1, 0.5 }, 1e-15, 1e-15)
    H.assert_close(S.window("hann", 5, { periodic = false, dtype = "float64" }),
      { 0, 0.5, 1, 0.5, 0 }, 1e-15, 1e-15)
    H.assert_close(S.window("hamming", 2, { dtype = "float64" }), { 0.08, 1 }, 1e-15, 1e-15)
    H.assert_close(S.window("rect", 3), { 1, 1, 1 }, 0, 0)
    H.assert_close(S.window("hann", 1), { 1 }, 0, 0)
  end)

  it("hz_to_mel and mel_to_hz on known points", function()
    assert.near(15, S.hz_to_mel(1000, "slaney"), 1e-12)
    assert.near(42, S.hz_to_mel(6400, "slaney"), 1e-12)
    assert.near(0.9, S.hz_to_mel(60, "slaney"), 1e-12)
    assert.near(200, S.mel_to_hz(3, "slaney"), 1e-12)
    assert.near(2595 * math.log(1 + 1000 / 700, 10), S.hz_to_mel(1000), 1e-9)
    for _, f in ipairs({ 0, 440, 999.5, 1000, 4000, 8000 }) do
      for _, s in ipairs({ "htk", "slaney" }) do
        assert.near(f, S.mel_to_hz(S.hz_to_mel(f, s), s), 1e-9)
      end
    end
  end)

  it("mel_filterbank defaults are torchaudio's: htk, no norm, 128 mels, 16 kHz", function()
    local fb = S.mel_filterbank({ n_freqs = 201 })
    assert.equal("128x201", shape_of(fb))
    H.assert_close(fb, S.mel_filterbank({ n_freqs = 201, n_mels = 128, sample_rate = 16000,
      fmin = 0, fmax = 8000, scale = "htk", norm = "none" }), 0, 0)
  end)

  it("apply_filterbank is filterbank @ spectrogram", function()
    local fb = S.mel_filterbank({ n_freqs = 65, n_mels = 8, dtype = "float64" })
    local spec = miles.rand(2, 65, 7, { dtype = "float64" })
    H.assert_close(S.apply_filterbank(fb, spec), miles.matmul(fb, spec), 1e-12, 1e-12)
  end)

  it("dct_matrix: orthonormal rows with ortho", function()
    local d = S.dct_matrix(12, 12, { dtype = "float64" })
    H.assert_close(miles.matmul(d, d:t()), miles.eye(12, 12, { dtype = "float64" }), 1e-12, 1e-12)
    H.assert_close(S.dct_matrix(3, 4, { norm = "none" }):select(1, 1), { 2, 2, 2, 2 }, 1e-6, 1e-6)
  end)

  it("mfcc of a batch equals the mfcc of each clip", function()
    local x = miles.randn(3, 4000)
    x[2]:mul_(1e-3)
    local o = { n_fft = 256, n_mels = 32, n_mfcc = 13 }
    local all = S.mfcc(x, o)
    for i = 1, 3 do
      H.assert_close(all[i], S.mfcc(x[i], o), 1e-5, 1e-4, "clip " .. i)
    end
  end)

  it("mel_spectrogram for LUMA-like 96 mel bands and 64-band 16 kHz clips", function()
    local x = miles.randn(2, 16000)
    local y = S.mel_spectrogram(x, { n_fft = 512, hop_length = 160, n_mels = 64 })
    assert.equal("2x64x101", shape_of(y))
    assert.equal("96x101", shape_of(S.mel_spectrogram(x[1], { n_fft = 1024, hop_length = 160, n_mels = 96 })))
  end)

  it("spectrogram: torchaudio's defaults, power 2 or 1", function()
    local x = miles.randn(4000)
    local p = S.spectrogram(x)
    H.assert_close(p, S.stft(x, { n_fft = 400, hop_length = 200, output = "power" }), 0, 0)
    local m = S.spectrogram(x, { n_fft = 128, power = 1 })
    H.assert_close(m, S.stft(x, { n_fft = 128, hop_length = 64, output = "magnitude" }), 0, 0)
    local e = H.error_of(S.spectrogram, x, { power = 3 })
    assert.truthy(e:find("spectrogram: option 'power' must be 1", 1, true), e)
  end)

  it("log: ln(x + eps)", function()
    local x = miles.tensor({ 0, 1, 10 }, { dtype = "float64" })
    H.assert_close(S.log(x), { math.log(1e-6), math.log(1 + 1e-6), math.log(10 + 1e-6) }, 1e-12, 1e-12)
    H.assert_close(S.log(x, { eps = 1 }), { 0, math.log(2), math.log(11) }, 1e-12, 1e-12)
  end)

  it("normalize: per-channel (x - mean) / std of [C,H,W] and [N,C,H,W]", function()
    local x = miles.rand(3, 4, 5, { dtype = "float64" })
    local y = S.normalize(x, { 0.5, 0.25, 0 }, { 2, 4, 0.5 })
    H.assert_close(y[1], (x[1] - 0.5) / 2, 1e-12, 1e-12)
    H.assert_close(y[2], (x[2] - 0.25) / 4, 1e-12, 1e-12)
    H.assert_close(y[3], x[3] / 0.5, 1e-12, 1e-12)
    local b = miles.rand(2, 3, 4, 5)
    local yb = S.normalize(b, miles.tensor({ 1, 2, 3 }), 0.5)
    H.assert_close(yb[2][3], (b[2][3] - 3) / 0.5, 1e-6, 1e-6)
  end)

  it("channel_stats then normalize gives zero mean and unit std per channel", function()
    local x = miles.rand(2, 3, 8, 8, { dtype = "float64" }) * 5 + 2
    local mean, std = S.channel_stats(x)
    assert.equal("3", shape_of(mean))
    local m2, s2 = S.channel_stats(S.normalize(x, mean, std))
    H.assert_close(m2, { 0, 0, 0 }, 0, 1e-12)
    H.assert_close(s2, { 1, 1, 1 }, 1e-12, 1e-12)
  end)

  it("normalize: clear errors", function()
    local x = miles.rand(3, 4, 5)
    local e = H.error_of(S.normalize, x, { 1, 2 }, { 1, 1, 1 })
    assert.truthy(e:find("normalize: mean has 2 values but the image has 3 channels", 1, true), e)
    e = H.error_of(S.normalize, x, 0, { 1, 0, 1 })
    assert.truthy(e:find("normalize: std must be > 0 in every channel", 1, true), e)
    e = H.error_of(S.normalize, miles.rand(4, 5), 0, 1)
    assert.truthy(e:find("normalize: expected an image [C, H, W] or a batch [N, C, H, W]", 1, true), e)
  end)
end)
