--- spoken-fashion: the embedded default data set, built offline from Debian packages.
-- Images are Fashion-MNIST (dataset-fashion-mnist); the audio is espeak-ng saying
-- the class's name ("t-shirt", "trouser", ... "ankle boot") in many voices,
-- speeds and pitches, placed at a random offset in a 1 s clip at 16 kHz with
-- background noise at a random signal-to-noise ratio, as a log-mel spectrogram.
-- Pairs follow the S-MNIST protocol: one image and one utterance of the same
-- class; train and validation from the training images, test from the test
-- images; the utterances of the test split come from voices and variants that
-- the other splits never hear.
--
--   local sf = require "miles.data.spoken_fashion"
--   local ds = sf.load({ preset = "easy", seed = 0 })   -- a miles.data.Dataset
--   -- other options: train/val/test (pair counts), cache_dir (default: the
--   -- miles cache, $MILES_CACHE), quiet (no progress bar)
--
-- Presets (README lists the unimodal and vanilla accuracies measured on each):
--   easy  the image learns fast (83% validation accuracy after one epoch alone),
--         the noisy audio slowly (28%), each alone reaches about 86%, together
--         about 95%: the dominant-modality case MILES is about;
--   hard  both modalities noisier (stronger noise, fewer voices, low-contrast
--         noisy images): alone about 58% (audio) and 66% (image), fused about 80%.
local miles = require "miles"
local data = require "miles.data"
local cache = require "miles.data.cache"

local M = {}

M.CLASSES = { "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
  "bag", "ankle boot" }

M.FASHION_DIR = "/usr/share/datasets/fashion-mnist"

-- espeak-ng's English voices and voice variants (no MBROLA voices: not installed).
local VOICES = { "en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbcwmd",
  "en-gb-x-gbclan", "en-gb-x-gbcwmd" }
local VARIANTS = { "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
  "klatt", "klatt2", "klatt3", "croak", "whisper" }

M.PRESETS = {
  easy = { voices = 8, variants = 11, utterances = 40, test_utterances = 10,
           snr = { -14, -2 }, image_contrast = 1.0, image_noise = 0.0 },
  hard = { voices = 3, variants = 4, utterances = 24, test_utterances = 6,
           snr = { -20, -8 }, image_contrast = 0.35, image_noise = 0.35 },
}

M.DEFAULTS = { preset = "easy", seed = 0, train = 8000, val = 2000, test = 2000,
  sample_rate = 16000, n_fft = 512, hop = 512, n_mels = 32 }

--- The options with defaults and the preset's fields filled in.
local function resolve(opts)
  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  local preset = M.PRESETS[o.preset]
  if not preset then
    error("spoken_fashion: unknown preset '" .. tostring(o.preset) .. "' (easy or hard)", 3)
  end
  for k, v in pairs(preset) do
    if o[k] == nil then o[k] = v end
  end
  return o
end

--- Speak one utterance into a WAV file with espeak-ng; raises if it fails.
local function speak(text, voice, variant, speed, pitch, path)
  local cmd = string.format("espeak-ng -v %s+%s -s %d -p %d -w '%s' '%s' 2>/dev/null", voice,
    variant, speed, pitch, path, text)
  local ok = os.execute(cmd)
  if not ok then
    error("spoken_fashion: espeak-ng failed (is the espeak-ng package installed?): " .. cmd, 0)
  end
end

--- The voice settings of utterance k (0-based) of a class: deterministic, spread
-- over voices, variants, speeds (wpm) and pitches.
local function voice_of(o, k)
  local voice = VOICES[k % o.voices + 1]
  local variant = VARIANTS[(k * 7 + k // o.voices) % o.variants + 1]
  local speed = 110 + (k * 37) % 140
  local pitch = 15 + (k * 53) % 75
  return voice, variant, speed, pitch
end

--- One utterance as a float32 signal at the sample rate, silence trimmed and the
-- level normalised to unit RMS (so the SNR alone sets the noise).
local function load_utterance(path, rate)
  local x = miles.io.read_audio(path, { mono = true, rate = rate })
  local loud = x:abs():gt(0.02):nonzero()
  if loud:size(1) > 0 then
    local first, last = loud[1][1]:item(), loud[-1][1]:item()
    x = x:narrow(1, first, last - first + 1)
  end
  if x:size(1) > rate then x = x:narrow(1, 1, rate) end
  local rms = math.sqrt((x * x):mean():item())
  return (x / math.max(rms, 1e-6)):contiguous()
end

--- All utterances: per class, the signals for the train/val splits (`fit`) and
-- for the test split (`test`, from voice settings the others never hear).
local function synthesize(o, tmp, progress)
  local pool = { fit = {}, test = {} }
  local total, done = #M.CLASSES * o.utterances, 0
  for c, name in ipairs(M.CLASSES) do
    pool.fit[c], pool.test[c] = {}, {}
    for k = 0, o.utterances - 1 do
      local path = string.format("%s/%d_%d.wav", tmp, c, k)
      local voice, variant, speed, pitch = voice_of(o, k)
      speak(name, voice, variant, speed, pitch, path)
      local x = load_utterance(path, o.sample_rate)
      os.remove(path)
      local into = k >= o.utterances - o.test_utterances and pool.test[c] or pool.fit[c]
      into[#into + 1] = x
      done = done + 1
      if progress then progress("speaking", done, total) end
    end
  end
  return pool
end

--- Fashion-MNIST images and 1-based labels of one file pair ("train" or "t10k").
local function read_fashion(kind)
  local dir = M.FASHION_DIR
  local img_path = string.format("%s/%s-images-idx3-ubyte.gz", dir, kind)
  local f = io.open(img_path, "rb")
  if not f then
    error("spoken_fashion: " .. img_path .. " is missing; install the dataset-fashion-mnist "
      .. "package (make deps)", 0)
  end
  f:close()
  local images = miles.io.read_idx(img_path)
  local labels = miles.io.read_idx(string.format("%s/%s-labels-idx1-ubyte.gz", dir, kind))
  return images, labels:to("int64") + 1
end

--- The clips of n samples: for sample i an utterance of class labels[i] from
-- `pool`, at a random offset in a 1 s clip, plus Gaussian noise at a random SNR.
-- Returns float32 [n, rate].
local function make_clips(o, labels, pool, gen)
  local n, rate = labels:size(1), o.sample_rate
  local clips = miles.zeros(n, rate)
  local choice = miles.rand(n, 3)  -- utterance, offset, SNR
  for i = 1, n do
    local c = labels[i]:item()
    local utts = pool[c]
    local u = utts[math.min(#utts, math.floor(choice[i][1]:item() * #utts) + 1)]
    local len = u:size(1)
    local off = math.floor(choice[i][2]:item() * (rate - len + 1))
    clips[i]:narrow(1, off + 1, len):copy_(u)
  end
  local snr = choice:select(2, 3) * (o.snr[2] - o.snr[1]) + o.snr[1]
  -- unit-RMS speech: the noise's standard deviation is 10^(-snr/20)
  local std = (snr * (-math.log(10) / 20)):exp():unsqueeze(2)
  return clips + miles.randn(n, rate) * std
end

--- Log-mel spectrograms [n, 1, n_mels, frames] of the clips of samples with these
-- labels, made and transformed a chunk at a time (a clip is 64 KB of float32).
local function audio_features(o, labels, pool, progress)
  local n, chunk, parts = labels:size(1), 512, {}
  for start = 1, n, chunk do
    local len = math.min(chunk, n - start + 1)
    local clips = make_clips(o, labels:narrow(1, start, len), pool)
    local mel = miles.signal.mel_spectrogram(clips, {
      sample_rate = o.sample_rate, n_fft = o.n_fft, hop_length = o.hop, n_mels = o.n_mels,
      fmin = 0, fmax = o.sample_rate / 2 })
    local db = miles.signal.amplitude_to_db(mel, { multiplier = 10, top_db = 80 })
    parts[#parts + 1] = db:unsqueeze(2)
    if progress then progress("clips", start + len - 1, n) end
  end
  return miles.cat(parts, 1)
end

--- Images degraded as the preset asks: contrast scaled towards mid-grey and
-- Gaussian pixel noise, back in uint8.
local function degrade(o, images)
  if o.image_contrast == 1 and o.image_noise == 0 then return images end
  local x = images:to("float32") / 255
  x = (x - 0.5) * o.image_contrast + 0.5 + miles.randn(x:shape()) * o.image_noise
  return (x:clamp(0, 1) * 255):to("uint8")
end

--- Build the arrays (called by the cache when they are not there yet).
local function build(o, progress)
  miles.manual_seed(o.seed)
  local tmp = os.tmpname()
  os.remove(tmp)
  assert(os.execute("mkdir -p '" .. tmp .. "'"), "spoken_fashion: cannot make " .. tmp)
  local ok, pool = pcall(synthesize, o, tmp, progress)
  os.execute("rm -rf '" .. tmp .. "'")
  if not ok then error(pool, 0) end
  local train_img, train_lab = read_fashion("train")
  local test_img, test_lab = read_fashion("t10k")
  if o.train + o.val > train_img:size(1) or o.test > test_img:size(1) then
    error(string.format("spoken_fashion: asks for %d+%d training and %d test pairs, "
      .. "Fashion-MNIST has %d and %d", o.train, o.val, o.test, train_img:size(1),
      test_img:size(1)), 0)
  end
  local fit_idx = miles.randperm(train_img:size(1)):narrow(1, 1, o.train + o.val)
  local test_idx = miles.randperm(test_img:size(1)):narrow(1, 1, o.test)
  local images = miles.cat({ train_img:index_select(1, fit_idx), test_img:index_select(1, test_idx) }, 1)
  local labels = miles.cat({ train_lab:index_select(1, fit_idx), test_lab:index_select(1, test_idx) }, 1)
  local n_fit = o.train + o.val
  local audio = miles.cat({ audio_features(o, labels:narrow(1, 1, n_fit), pool.fit, progress),
                            audio_features(o, labels:narrow(1, n_fit + 1, o.test), pool.test, progress) }, 1)
  return {
    audio = audio:contiguous(),
    image = degrade(o, images):unsqueeze(2):contiguous(),
    labels = labels:contiguous(),
  }
end

--- The parameters that identify a built copy in the cache.
local function cache_params(o)
  local p = {}
  for _, k in ipairs({ "preset", "seed", "train", "val", "test", "sample_rate", "n_fft", "hop",
                       "n_mels", "voices", "variants", "utterances", "test_utterances",
                       "image_contrast", "image_noise" }) do
    p[k] = o[k]
  end
  p.snr = string.format("%g..%g", o.snr[1], o.snr[2])
  p.version = 2 -- bump whenever the build changes, so older caches are rebuilt
  return p
end

--- The data set as a miles.data.Dataset with splits train/val/test, built into
-- the cache on first use (deterministic for a seed) and memory-mapped after.
function M.load(opts)
  local o = resolve(opts)
  local name = string.format("spoken-fashion-%s-%d", o.preset, o.seed)
  local arrays = cache.build(name, cache_params(o), function(progress) return build(o, progress) end,
    { dir = o.cache_dir, quiet = o.quiet })
  local n_fit = o.train + o.val
  local function range(first, count) return miles.arange(first, first + count) end
  return data.Dataset({
    modalities = { audio = arrays.audio, image = arrays.image },
    labels = arrays.labels,
    splits = { train = range(1, o.train), val = range(o.train + 1, o.val),
               test = range(n_fit + 1, o.test) },
    classes = M.CLASSES,
  })
end

M.resolve = resolve
return M
