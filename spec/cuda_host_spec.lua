-- The CUDA backend's host side (csrc/cuda/cuda_runtime.c, cuda_graph.c,
-- cuda_pinned.c) against a fake CUDA runtime on host memory (spec/c/): the
-- caching allocator, copies, pinned memory, the error flag, out of memory and CUDA
-- graph capture, checked on any machine. The binary is built with the CUDA
-- backend (`make` with the toolkit); a CPU-only build has none: pending.
local H = require "helpers"

local bin = H.miles_bin():gsub("miles$", "cuda_host_check")
local f = io.open(bin, "rb")

describe("the CUDA runtime's host side on a fake GPU", function()
  if not f then
    pending("not built (a build without the CUDA toolkit)")
    return
  end
  f:close()
  local p = io.popen(bin .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  local checks = 0
  for line in out:gmatch("[^\n]+") do
    local name = line:match("^ok %- (.*)$")
    local bad, why = line:match("^not ok %- (.-): (.*)$")
    if name or bad then
      checks = checks + 1
      it(name or bad, function() assert.is_nil(why, why) end) -- the C check's verdict
    end
  end
  it("ran to its end", function()
    assert.truthy(out:find("\n0 failed\n?$") or out:find("^0 failed"), out)
    assert.is_true(ok and code == 0, out)
    assert.is_true(checks >= 10, out)
  end)
end)
