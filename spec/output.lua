-- busted output handler: the plain terminal report, then one closing line that CI
-- reads, "N passed, N failed, N skipped" (errors count as failures; pending
-- specs, such as GPU specs on a machine without a GPU, as skipped).
return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.plainTerminal"(options)
  busted.subscribe({ "suite", "end" }, function()
    io.write(string.format("%d passed, %d failed, %d skipped\n", handler.successesCount,
      handler.failuresCount + handler.errorsCount, handler.pendingsCount))
    io.flush()
    return nil, true
  end)
  return handler
end
