-- Runs the spec suite with busted inside the miles host:
--   build/bin/miles spec/run.lua [busted options] [spec files]
-- (`make test` does this; `make test-san` does it with the sanitizer build).
-- The settings (paths, output handler) come from .busted at the repository root.
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
require "busted.runner"({ standalone = false })
