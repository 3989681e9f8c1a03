--- miles.signal: spectrograms and image normalisation for preprocessing.
-- The C functions (csrc/signal/, bound in csrc/lua/l_signal.c) plus the Lua-level
-- conveniences below. `require "miles.signal"` returns the same table as
-- `require("miles.core").signal`, extended in place.
--
-- All functions run on the CPU, take float32 or float64 tensors (any layout) and
-- return new tensors of the input's dtype. They compute values only: tensors
-- that require grad are accepted and the results carry no autograd history
-- (normalize excepted: it is made of ordinary tensor ops).
--
-- Conventions (details in csrc/signal/stft.h and mel.h):
--
-- * `stft` follows torch.stft (`return_complex=True` then `view_as_real`), but
--   its default window is a periodic hann (torch.stft's is rect); complex output
--   is `[..., n_fft/2+1, frames, 2]`, magnitude and power `[..., freq, frames]`.
--   float32 runs KISS FFT in float32; float64 our own double-precision DFT.
-- * `mel_filterbank` is `[n_mels, n_freqs]` (librosa's layout; torchaudio's
--   melscale_fbanks is its transpose); scales "htk" (default, as torchaudio) and
--   "slaney" (librosa's default), norm "slaney" (area) or none (default).
-- * `spectrogram`, `mel_spectrogram` and `mfcc` use torchaudio's transforms'
--   defaults: n_fft 400, hop_length win_length // 2, power 2, 128 mels at 16 kHz,
--   MFCC: 40 coefficients, DCT-II ortho of the decibel (10 log10, top_db 80) mel
--   spectrogram (log_mels = true: ln(mel + 1e-6)).
-- * `amplitude_to_db` floors at top_db below the max of each spectrogram (the
--   last two dims), so a clip's values do not depend on its batch-mates
--   (torchaudio takes the max over the last three dims of a 3-D or 4-D input).
--
-- Functions from C:
--
-- * `stft(x, {n_fft=, hop_length=n_fft//4, win_length=n_fft, window="hann"|
--   "hamming"|"rect"|tensor, center=true, pad_mode="reflect"|"constant"|
--   "replicate"|"circular", onesided=true, normalized=false,
--   output="complex"|"magnitude"|"power"})`
-- * `window(kind, length, {periodic=true, dtype="float32"})`
-- * `magnitude(z)`, `power(z)`: |z| and |z|^2 of a complex `[..., 2]` tensor
-- * `mel_filterbank({n_freqs=, n_mels=128, sample_rate=16000, fmin=0,
--   fmax=sample_rate/2, scale="htk"|"slaney", norm="slaney"|"none", dtype=})`
-- * `apply_filterbank(fb, spec)`: `fb [M, F]` applied to `spec [..., F, T]`
-- * `mel_spectrogram(x, {n_fft=400, hop_length=, win_length=, window=, center=,
--   pad_mode=, normalized=, power=2|1, n_mels=, sample_rate=, fmin=, fmax=,
--   scale=, norm=})`
-- * `amplitude_to_db(x, {multiplier=10|20, amin=1e-10, ref=1, top_db=80|false})`:
--   `multiplier * log10(max(x, amin) / max(ref, amin))` floored at top_db below
--   the spectrogram's max (default 80 as librosa's power_to_db; false: no floor,
--   torchaudio's AmplitudeToDB default)
-- * `dct_matrix(n_out, n_in, {norm="ortho"|"none", dtype=})`: `[n_out, n_in]`
-- * `mfcc(x, {n_mfcc=40, norm="ortho"|"none", log_mels=false, top_db=80|false,
--   mel_norm="slaney"|"none", and mel_spectrogram's options})`
-- * `hz_to_mel(hz, scale)`, `mel_to_hz(mel, scale)`: numbers
-- * `fft_cache_size()`, `fft_cache_clear()`: the pool of FFT plans (plans are
--   reused across calls of the same n_fft, one per thread).
-- @module miles.signal
local core = require "miles.core"

local S = core.signal

--- A shallow copy of an options table (nil gives an empty one).
local function copy(opts)
  local t = {}
  for k, v in pairs(opts or {}) do t[k] = v end
  return t
end

--- The magnitude or power spectrogram, as torchaudio.transforms.Spectrogram.
-- Options: stft's, with torchaudio's defaults (n_fft 400, hop_length
-- win_length // 2), and power = 2 (power) or 1 (magnitude).
-- @param x float tensor [..., T]
-- @param opts table
-- @return tensor [..., n_fft/2+1, frames]
function S.spectrogram(x, opts)
  local o = copy(opts)
  local power = o.power
  if power == nil then power = 2 end
  if power ~= 1 and power ~= 2 then
    error("spectrogram: option 'power' must be 1 (magnitude) or 2 (power), got " .. tostring(power), 2)
  end
  if o.output ~= nil then
    error("spectrogram: unknown option 'output' (use power = 1 or 2, or signal.stft)", 2)
  end
  o.power = nil
  o.n_fft = o.n_fft or 400
  if o.hop_length == nil then
    local win = o.win_length or (core.is_tensor(o.window) and o.window:numel()) or o.n_fft
    o.hop_length = math.max(1, win // 2)
  end
  o.output = power == 1 and "magnitude" or "power"
  return S.stft(x, o)
end

--- ln(x + eps), elementwise: a log spectrogram without the decibel scaling.
-- @param x float tensor
-- @param opts {eps = 1e-6}
-- @return tensor
function S.log(x, opts)
  local eps = (opts and opts.eps) or 1e-6
  if type(eps) ~= "number" or not (eps >= 0) then
    error("log: option 'eps' must be a number >= 0, got " .. tostring(eps), 2)
  end
  return core.no_grad(function() return (x + eps):log() end)
end

--- The channel dim of an image [C, H, W] or a batch [N, C, H, W] (1-based).
local function channel_dim(x, fn)
  local nd = x:dim()
  if nd ~= 3 and nd ~= 4 then
    error(string.format("%s: expected an image [C, H, W] or a batch [N, C, H, W], got shape [%s]",
      fn, table.concat(x:shape(), ",")), 3)
  end
  return nd - 2
end

--- Per-channel values (a number, a list of C numbers or a tensor of C values)
-- as a tensor shaped to broadcast against x.
local function per_channel(v, x, cdim, what)
  local C = x:size(cdim)
  if type(v) == "number" then
    local t = {}
    for i = 1, C do t[i] = v end
    v = t
  end
  if type(v) == "table" and not core.is_tensor(v) then
    if #v ~= C then
      error(string.format("normalize: %s has %d values but the image has %d channels", what, #v, C), 3)
    end
    v = core.tensor(v, { dtype = x:dtype() })
  elseif core.is_tensor(v) then
    if v:numel() ~= C then
      error(string.format("normalize: %s has %d values but the image has %d channels", what,
        v:numel(), C), 3)
    end
    v = v:to(x:dtype()):reshape(C)
  else
    error("normalize: " .. what .. " must be a number, a list or a tensor, got " .. type(v), 3)
  end
  return v:reshape(C, 1, 1)
end

--- Per-channel normalisation of an image, as torchvision's Normalize:
-- (x - mean[c]) / std[c] for each channel c.
-- @param x float tensor [C, H, W] or [N, C, H, W]
-- @param mean number, list of C numbers or tensor of C values
-- @param std idem, all > 0
-- @return tensor of x's shape
function S.normalize(x, mean, std)
  if not core.is_tensor(x) then
    error("normalize: expected a tensor, got " .. type(x), 2)
  end
  local cdim = channel_dim(x, "normalize")
  local m = per_channel(mean, x, cdim, "mean")
  local s = per_channel(std, x, cdim, "std")
  local smin = core.no_grad(function() return s:min():item() end)
  if not (smin > 0) then
    error("normalize: std must be > 0 in every channel, got " .. tostring(smin), 2)
  end
  return (x - m) / s
end

--- Per-channel mean and standard deviation (population: divided by the count)
-- over every dim but the channel one, e.g. to compute a data set's statistics.
-- @param x float tensor [C, H, W] or [N, C, H, W]
-- @return mean, std: tensors of C values
function S.channel_stats(x)
  local cdim = channel_dim(x, "channel_stats")
  local dims = {}
  for d = 1, x:dim() do
    if d ~= cdim then dims[#dims + 1] = d end
  end
  return core.no_grad(function()
    return x:mean(dims), x:std(dims, { correction = 0 })
  end)
end

return S
