--- CREMA-D (Cao et al. 2014) from its public layout, preprocessed as in the
-- MILES paper: one video frame and one audio spectrogram per clip, both resized
-- to 224 x 224.
--
--   local cremad = require "miles.data.cremad"
--   local ds, info = cremad.load("/data/CREMA-D", { seed = 0 })
--   -- ds.modalities.image uint8 [N, 3, 224, 224], ds.modalities.audio float32
--   -- [N, 1, 224, 224], ds.labels int64 1..6 (M.CLASSES), splits train/val/test
--
-- Layout: <root>/AudioWAV/<id>.wav and <root>/VideoFlash/<id>.flv, id
-- Actor_Sentence_EMO_Level (1001_DFA_ANG_XX); classes NEU HAP SAD FEA DIS ANG
-- (labels 1..6 in that order).
--
-- Image: the frame in the middle of the clip (at half the audio's duration; the
-- first frame when the video is shorter), taken with ffmpeg (an external
-- command: apt-get install ffmpeg), as RGB, resized. opts.frames = a folder of
-- pre-extracted frames <id>.png / <id>.jpg instead, then no ffmpeg is needed.
-- Audio: mono at 16 kHz, repeated to fill 3 s and clipped to [-1, 1] (as the
-- OGM-GE code), the magnitude STFT with a 512-sample periodic hann window, hop
-- 159 (overlap 353), not centred: 257 x 299; its log, ln(|X| + 1e-7); resized.
-- Splits: 70/15/15, by default stratified by class with the seed (the paper
-- does not say how it split; split = "random" draws a plain random split, which
-- gives the paper's 5210/1116/1116 on the 7442 clips). Neither keeps actors
-- apart: an actor's clips can be in several splits.
--
-- Options: seed (0, the split), size (224), train/val/test (fractions 0.7,
-- 0.15, 0.15), split ("stratified" | "random"), frames (a folder, or false),
-- exclude (ids to leave out, e.g. a broken clip), cache_dir, rebuild, quiet.
-- The arrays are built once into the cache (a progress bar) and memory-mapped
-- after; the split is drawn at each load.
local fs = require "miles.fs"
local core = require "miles.core"
local data = require "miles.data"
local signal = require "miles.signal"
local layout = require "miles.data.layout"

local M = {}

M.NAME = "cremad"
M.CLASSES = { "NEU", "HAP", "SAD", "FEA", "DIS", "ANG" }
M.SAMPLE_RATE = 16000
M.CLIP_SECONDS = 3
M.N_FFT = 512
M.HOP = 159
M.DEFAULTS = { size = 224, train = 0.7, val = 0.15, test = 0.15, split = "stratified",
  frames = false, exclude = false }

local ID = "^(%d+)_(%u+)_(%u+)_(%w+)$"

--- The log-magnitude spectrogram [257, 299] of a mono 16 kHz signal [T] (see
-- the header).
function M.spectrogram(x)
  local len = M.SAMPLE_RATE * M.CLIP_SECONDS
  local n = x:size(1)
  if n == 0 then error("cremad.spectrogram: an empty signal", 2) end
  local copies = {}
  for i = 1, (len + n - 1) // n do copies[i] = x end
  local clip = core.cat(copies, 1):narrow(1, 1, len):clamp(-1, 1)
  local mag = signal.stft(clip, { n_fft = M.N_FFT, hop_length = M.HOP, center = false,
    output = "magnitude" })
  return signal.log(mag, { eps = 1e-7 })
end

-- The clips of the folder: {id, label, wav, video or frame}, sorted by id.
local function clips_of(root, o)
  local excluded = {}
  for _, id in ipairs(o.exclude or {}) do excluded[id] = true end
  local class_of = {}
  for c, code in ipairs(M.CLASSES) do class_of[code] = c end
  local clips = {}
  local names = layout.list(M.NAME, root .. "/AudioWAV", "%.wav$",
    "the audio clips, AudioWAV/<Actor_Sentence_EMO_Level>.wav")
  for _, file in ipairs(names) do
    local id = file:sub(1, -5)
    local emo = select(3, id:match(ID))
    if not emo or not class_of[emo] then
      layout.expected(M.NAME, "clips named Actor_Sentence_EMO_Level.wav with EMO one of "
        .. table.concat(M.CLASSES, " "), root .. "/AudioWAV/" .. file)
    end
    if not excluded[id] then
      clips[#clips + 1] = { id = id, label = class_of[emo], wav = root .. "/AudioWAV/" .. file }
    end
  end
  return clips
end

-- Attach each clip's video (or pre-extracted frame) and check they are there.
local function attach_pictures(root, clips, o)
  local paths = {}
  if o.frames then
    local dir = o.frames:gsub("/+$", "")
    if not fs.is_dir(dir) then layout.expected(M.NAME, "a folder of frames <id>.png or <id>.jpg", dir) end
    for i, c in ipairs(clips) do
      c.frame = dir .. "/" .. c.id .. ".png"
      for _, ext in ipairs({ ".jpg", ".jpeg" }) do
        if not fs.exists(c.frame) then c.frame = dir .. "/" .. c.id .. ext end
      end
      paths[i] = c.frame
    end
    layout.check_all(M.NAME, paths, "a frame of every clip, <frames>/<id>.png or .jpg")
  else
    for i, c in ipairs(clips) do
      c.video = root .. "/VideoFlash/" .. c.id .. ".flv"
      paths[i] = c.video
    end
    layout.check_all(M.NAME, paths, "the video of every clip, VideoFlash/<id>.flv")
  end
  return paths
end

-- The middle frame of a clip's video as uint8 [3, H, W], via ffmpeg into tmp.
local function extract_frame(video, seconds, tmp)
  local out, log = tmp .. "/frame.png", tmp .. "/ffmpeg.log"
  for _, at in ipairs({ seconds / 2, 0 }) do
    os.remove(out)
    local cmd = ("ffmpeg -nostdin -loglevel error -y -ss %.3f -i %s -frames:v 1 -pix_fmt rgb24 %s 2>%s")
      :format(at, fs.quote(video), fs.quote(out), fs.quote(log))
    if not os.execute(cmd) then
      error(("cremad: ffmpeg could not take a frame from %s: %s"):format(video,
        (fs.read(log) or ""):gsub("%s+$", "")), 0)
    end
    if fs.exists(out) then return core.io.read_png(out) end
  end
  error("cremad: ffmpeg found no frame in " .. video, 0)
end

-- Build the arrays of the clips (called by the cache).
local function build(clips, o, progress)
  local n, s = #clips, o.size
  local audio = core.zeros(n, 1, s, s)
  local image = core.zeros(n, 3, s, s, { dtype = "uint8" })
  local labels = {}
  if not o.frames and not fs.have("ffmpeg") then
    error("cremad: ffmpeg is needed to take frames from VideoFlash/*.flv and is not installed "
      .. "(apt-get install ffmpeg), or pass frames = a folder of <id>.png", 0)
  end
  fs.with_tmpdir(function(tmp)
    for i, c in ipairs(clips) do
      local x = core.io.read_audio(c.wav, { mono = true, rate = M.SAMPLE_RATE })
      audio[i]:copy_(layout.resize(M.spectrogram(x):unsqueeze(1), s, s))
      local picture = c.frame and layout.read_image(c.frame)
        or extract_frame(c.video, x:size(1) / M.SAMPLE_RATE, tmp)
      image[i]:copy_(layout.resize(layout.rgb(picture), s, s))
      labels[i] = c.label
      progress("clips", i, n)
    end
  end)
  return { audio = audio, image = image, labels = core.tensor(labels, { dtype = "int64" }) }
end

--- The data set in folder root as a miles.data.Dataset with splits
-- train/val/test (see the header), and the cache's info {built, path, ...}.
function M.load(root, opts)
  local o = layout.options(M.NAME, opts, M.DEFAULTS)
  if o.split ~= "stratified" and o.split ~= "random" then
    error("cremad.load: split must be 'stratified' or 'random', got " .. tostring(o.split), 2)
  end
  root = layout.root(M.NAME, root)
  local clips = clips_of(root, o)
  local files = attach_pictures(root, clips, o)
  for _, c in ipairs(clips) do files[#files + 1] = c.wav end
  local params = { size = o.size, sample_rate = M.SAMPLE_RATE, clip_seconds = M.CLIP_SECONDS,
    n_fft = M.N_FFT, hop = M.HOP, frame = o.frames and "given" or "middle", version = 1 }
  local arrays, info = layout.cached(M.NAME, root, params, files,
    function(progress) return build(clips, o, progress) end, o)
  local fractions = { train = o.train, val = o.val, test = o.test }
  local splits = o.split == "random" and data.random_split(#clips, fractions, o.seed)
    or data.stratified_split(arrays.labels, fractions, o.seed)
  return data.Dataset({
    modalities = { audio = arrays.audio, image = arrays.image },
    labels = arrays.labels, splits = splits, classes = M.CLASSES,
  }), info
end

return M
