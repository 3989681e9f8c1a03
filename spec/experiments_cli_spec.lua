-- Every experiment script answers --help (its header and its flags) and exits 0.
local H = require "helpers"

describe("experiment scripts", function()
  for _, name in ipairs({ "table2", "table3", "ablation_tau", "ablation_mu", "ablation_u_source",
                          "ablation_reset_other", "sweep" }) do
    it(name .. ".lua --help prints its flags", function()
      local p = assert(io.popen(H.miles_bin() .. " experiments/" .. name .. ".lua --help 2>&1"))
      local out = p:read("a")
      local ok = p:close()
      assert(ok, name .. " --help failed:\n" .. out)
      assert(out:find("--epochs", 1, true), name .. " --help lacks --epochs:\n" .. out)
      assert(out:find("--autocast", 1, true), name .. " --help lacks --autocast:\n" .. out)
    end)
  end
end)
