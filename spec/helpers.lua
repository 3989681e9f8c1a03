--- Helpers shared by the specs: gradient checks against finite differences,
-- approximate comparisons, fixtures, and the GPU switch.
local miles = require "miles"

local H = {}

--- Is a CUDA device usable here? GPU specs are written with H.gpu_specs (below),
-- so that on a machine without a GPU they show as pending
-- (skipped), never passed.
H.cuda_available = miles.cuda_device_count() > 0
-- The GPU is the emulated one (make EMU=1, spec/emu/): our kernels run as host
-- code, matrix products and convolutions as the CPU's, CUDA graphs do not exist.
-- Specs of those run only on a real GPU: (H.real_gpu and it or pending).
H.cuda_emulated = miles.cuda_emulated()
H.real_gpu = H.cuda_available and not H.cuda_emulated

--- A GPU spec's name: on the emulated GPU its "#gpu" tag reads "#emulated-gpu",
-- so that a run there is never reported as a run on a GPU.
function H.gpu_name(name)
  return H.cuda_emulated and (name:gsub("#gpu", "#emulated-gpu")) or name
end

--- GPU specs, from busted's functions of the spec file:
--   local gpu_it, gpu_describe, real_gpu_it = H.gpu_specs(it, describe, pending)
-- gpu_it / gpu_describe run where there is a GPU (real or emulated), real_gpu_it
-- only on a real one; elsewhere they are pending.
function H.gpu_specs(it_, describe_, pending_)
  local function wrap(f, on)
    return function(name, fn)
      if on then f(H.gpu_name(name), fn) else pending_(name, fn) end
    end
  end
  return wrap(it_, H.cuda_available), wrap(describe_, H.cuda_available), wrap(it_, H.real_gpu)
end

--- describe(name, fn) for specs that run an outside program (ffmpeg, gnuplot,
-- espeak-ng): where it is missing they fail with its name, as CI must have it;
-- with MILES_SPECS_SKIP_MISSING=1 (tools/gpu-check.sh on a bare GPU node) they
-- are reported as skipped instead, the program named.
--   H.describe_needing("ffmpeg", describe, pending)("data.cremad", function() ... end)
function H.describe_needing(program, describe_, pending_)
  return function(name, fn)
    if require("miles.fs").have(program) or os.getenv("MILES_SPECS_SKIP_MISSING") ~= "1" then
      describe_(name, fn)
    else
      pending_(name .. " (needs " .. program .. ", not installed)")
    end
  end
end

--- Directory of the committed fixtures.
H.fixtures = "spec/fixtures/"

--- Largest |a - b| over all elements, as a Lua number.
function H.max_abs_diff(a, b)
  return miles.no_grad(function()
    return (a:to("float64") - b:to("float64")):abs():max():item()
  end)
end

--- Assert that tensors (or a tensor and a nested table / number) are close:
-- |a - b| <= atol + rtol * |b| elementwise, with the same shape.
function H.assert_close(a, b, rtol, atol, what)
  if not miles.is_tensor(b) then
    b = miles.tensor(b, { dtype = "float64" })
  end
  rtol, atol = rtol or 1e-5, atol or 1e-6
  local sa, sb = table.concat(a:shape(), "x"), table.concat(b:shape(), "x")
  assert(sa == sb, (what or "value") .. ": shape " .. sa .. " ~= expected " .. sb)
  if not miles.allclose(a:to("float64"), b:to("float64"), rtol, atol) then
    error(string.format("%s: not close (max |diff| %.3g, rtol %g, atol %g)\ngot %s\nexpected %s",
      what or "value", H.max_abs_diff(a, b), rtol, atol, tostring(a), tostring(b)), 2)
  end
end

--- Numerical gradient check in float64.
-- fn(...) takes the inputs and returns a tensor; inputs is a list of float64
-- tensors (those with requires_grad are checked). The scalar checked is
-- sum(fn(...) * w) for a fixed random w, so every output element matters.
-- Returns true, or raises an error naming the input and element that differ.
function H.gradcheck(fn, inputs, opts)
  opts = opts or {}
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-5, opts.rtol or 1e-3
  for i, x in ipairs(inputs) do
    assert(x:dtype() == "float64", "gradcheck: input " .. i .. " must be float64")
  end
  local out = fn(table.unpack(inputs))
  local w = miles.randn(out:shape(), { dtype = "float64" })
  local function objective()
    return (fn(table.unpack(inputs)) * w):sum()
  end
  for _, x in ipairs(inputs) do
    if x.requires_grad then x.grad = nil end
  end
  objective():backward()
  for i, x in ipairs(inputs) do
    if x.requires_grad then
      local analytic = x.grad
      assert(analytic, "gradcheck: input " .. i .. " got no gradient")
      local flat = x:view(-1)
      local numeric = miles.zeros(x:numel(), { dtype = "float64" })
      miles.no_grad(function()
        for j = 1, x:numel() do
          local orig = flat[j]:item()
          flat[j] = orig + eps
          local up = objective():item()
          flat[j] = orig - eps
          local down = objective():item()
          flat[j] = orig
          numeric[j] = (up - down) / (2 * eps)
        end
      end)
      numeric = numeric:reshape(x:shape())
      local a64 = analytic:to("float64")
      if not miles.allclose(a64, numeric, rtol, atol) then
        error(string.format("gradcheck: input %d: analytic and numeric gradients differ "
          .. "(max |diff| %.3g)\nanalytic %s\nnumeric %s", i, H.max_abs_diff(a64, numeric),
          tostring(a64), tostring(numeric)), 2)
      end
    end
  end
  return true
end

--- A float64 leaf with random values that requires grad.
function H.leaf(...)
  local t = miles.randn(...)
  t = t:to("float64")
  t.requires_grad = true
  return t
end

--- Load a fixture array written by spec/fixtures/make_torch_fixtures.py.
function H.fixture(name)
  return miles.load(H.fixtures .. name .. ".npy")
end

--- The message of the error fn raises (fails if it raises none).
function H.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return tostring(err)
end

--- A fresh empty directory for the files a test writes (remove it with H.rmdir).
function H.tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  return dir
end

--- Remove a directory made by H.tmpdir, with everything in it.
function H.rmdir(dir)
  os.execute("rm -rf '" .. dir .. "'")
end

--- Write the string bytes as the whole content of the file at path.
function H.write_file(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

--- The whole content of the file at path, as a string of bytes.
function H.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- Does a file (or directory) exist at path?
function H.exists(path)
  return os.rename(path, path) ~= nil
end

--- The names in a directory, sorted.
function H.entries(dir)
  local list = miles._data.list_dir(dir)
  table.sort(list)
  return list
end

--- Assert that fn raises an error whose message contains every given piece
-- (plain text); returns the message.
function H.raises(fn, ...)
  local msg = H.error_of(fn)
  for _, piece in ipairs({ ... }) do
    assert(msg:find(piece, 1, true), string.format("error %q lacks %q", msg, piece))
  end
  return msg
end

--- The miles host running these specs (for child processes): $MILES_BIN, the
-- running interpreter, else build/bin/miles.
function H.miles_bin()
  for _, c in ipairs({ os.getenv("MILES_BIN") or false, arg and arg[-1] or false }) do
    if c and c:match("miles$") and io.open(c, "rb") then return c end
  end
  return "build/bin/miles"
end

--- Copies of a state dict's tensors.
function H.copy_state(sd)
  local out = {}
  for k, t in pairs(sd) do out[k] = miles.no_grad(function() return t:clone() end) end
  return out
end

--- Do two state dicts hold the same keys and exactly the same values? (false
-- and the first key that differs otherwise)
function H.same_state(a, b)
  for k, t in pairs(a) do
    assert(b[k], k .. " missing")
    if not miles.allclose(t:to("float64"), b[k]:to("float64"), 0, 0) then return false, k end
  end
  for k in pairs(b) do assert(a[k], k .. " unexpected") end
  return true
end

--- Training-log rows without the wall-clock column, as JSON text (NaN kept):
-- equal text means equal numbers.
function H.rows_json(rows)
  local out = {}
  for i, r in ipairs(rows) do
    local c = {}
    for k, v in pairs(r) do if k ~= "seconds" then c[k] = v end end
    out[i] = c
  end
  return require("miles.checkpoint").json_encode(out)
end

--- A fusion model (seeded) of two small conv encoders over 1x8x8 inputs,
-- "audio" and "image", 4 classes: 4-D weights for the gradient rules.
function H.conv_fusion_model(opts)
  local nn, fusion = miles.nn, require "miles.fusion"
  miles.manual_seed(0)
  local function enc()
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 16), nn.ReLU())
  end
  return fusion.Model{ encoders = { audio = enc(), image = enc() }, order = { "audio", "image" }, classes = 4,
                       fusion = opts and opts.fusion }
end

return H
