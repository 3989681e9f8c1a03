-- The `miles` host and its REPL (csrc/main.c, csrc/lua/l_repl.c), driven as a
-- child process through pipes and temporary files. Stdin is never a terminal
-- here, so the REPL reads plain lines and prints no prompt: stdout holds only
-- the printed values, stderr the errors.

-- The host under test: $MILES_BIN, else the host running this spec (arg[-1],
-- so `make test-san` tests the sanitizer build), else build/bin/miles.
local function find_host()
  local env = os.getenv("MILES_BIN")
  if env and env ~= "" then return env end
  local a = rawget(_G, "arg")
  if type(a) == "table" and type(a[-1]) == "string" and a[-1]:match("miles$") then
    return a[-1]
  end
  return "build/bin/miles"
end

local HOST = find_host()

-- Quote s for sh.
local function q(s)
  return "'" .. s:gsub("'", [['\'']]) .. "'"
end

local function write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function read_file(path)
  local f = assert(io.open(path, "r"))
  local text = f:read("a")
  f:close()
  return text
end

-- A guard against a host that hangs: the whole command is killed after 20 s.
local GUARD = os.execute("command -v timeout >/dev/null 2>&1") and "timeout -k 2 20 " or ""

-- Run the host with the shell words args and input on stdin (a file, so not
-- a terminal; /dev/null when input is nil). Returns stdout, stderr and the
-- exit status. No history file is ever written.
local function host(args, input)
  local inpath, errpath = os.tmpname(), os.tmpname()
  write_file(inpath, input or "")
  local cmd = string.format("MILES_HISTORY= %s%s %s <%s 2>%s",
                            GUARD, q(HOST), args or "", q(inpath), q(errpath))
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  local err = read_file(errpath)
  os.remove(inpath)
  os.remove(errpath)
  return out, err, code
end

-- Write a temporary script; the caller removes it.
local function script(text)
  local path = os.tmpname()
  write_file(path, text)
  return path
end

-- Lua code that makes the host send itself SIGINT (Ctrl-C) in 0.3 s.
local SELF_INTERRUPT = [[local pid = io.open("/proc/self/stat"):read("n") ]] ..
  [[os.execute("(sleep 0.3; kill -INT " .. pid .. ") >/dev/null 2>&1 &")]]

describe("miles REPL on a pipe", function()
  it("prints values, keeps going after an error", function()
    local p = assert(io.popen(string.format(
      [[printf '1+1\nlocal x = 3\nx\nerror("boom")\n2*21\n' | MILES_HISTORY= %s%s 2>&1]],
      GUARD, q(HOST))))
    local out = p:read("a")
    local _, _, code = p:close()
    assert.are.equal(0, code)
    assert.truthy(out:find("^.-2\n"))
    assert.truthy(out:find("stdin:1: boom", 1, true))
    assert.truthy(out:find("boom.-stack traceback:.-42\n$"))
  end)

  it("prints nothing but the values (no prompt, no banner)", function()
    local out, _, code = host("", "1+1\nx = 5\nx * 2\n")
    assert.are.equal("2\n10\n", out)
    assert.are.equal(0, code)
  end)

  it("separates several values with tabs, through tostring", function()
    local out = host("", 'return 1, nil, "a"\n' ..
      'setmetatable({}, {__tostring = function() return "T!" end})\n')
    assert.are.equal("1\tnil\ta\nT!\n", out)
  end)

  it("keeps reading an unfinished chunk", function()
    local out, err = host("", "for i=1,2 do\nprint(i)\nend\n" ..
      "function f(a,\nb)\nreturn a +\nb end\nf(40, 2)\n" ..
      "math.max(1,\n5)\n#{1,\n2}\nx =\n4\nx\n")
    assert.are.equal("1\n2\n42\n5\n2\n4\n", out)
    assert.is_nil(err:find("stdin:", 1, true))
  end)

  it("reports a syntax error and a chunk left open at the end", function()
    local out, err, code = host("", "1 +* 2\n3\nfor i = 1, 2 do\n")
    assert.are.equal("3\n", out)
    assert.truthy(err:find("stdin:1: unexpected symbol", 1, true))
    assert.truthy(err:find("<eof>", 1, true))
    assert.are.equal(0, code)
  end)

  it("reports runtime errors with a traceback on stderr", function()
    local out, err = host("", "local t = nil; t.x = 1\n'still here'\n")
    assert.are.equal("still here\n", out)
    assert.truthy(err:find("attempt to index a nil value", 1, true))
    assert.truthy(err:find("stack traceback:", 1, true))
  end)

  it("stops at `exit` and at `quit`", function()
    assert.are.equal("1\n", (host("", "1\nexit\n2\n")))
    assert.are.equal("1\n", (host("", "1\n  quit  \n2\n")))
  end)

  it("survives Ctrl-C in a running statement", function()
    local out, err, code = host("", SELF_INTERRUPT .. "\nwhile true do end\n6*7\n")
    assert.are.equal("42\n", out)
    assert.truthy(err:find("interrupted!", 1, true))
    assert.are.equal(0, code)
  end)
end)

describe("miles host command line", function()
  it("runs a script with arg and ...", function()
    local path = script([[
      print(arg[0] == ..., select("#", ...))
      print(arg[1], arg[2], ...)
      print(type(arg[-1]))
    ]])
    local out, _, code = host(q(path) .. " a b")
    os.remove(path)
    assert.are.equal(0, code)
    assert.are.equal("false\t2\na\tb\ta\tb\nstring\n", out)
  end)

  it("gives the script its own name as arg[0]", function()
    local path = script("print(arg[0])\n")
    local out = host(q(path))
    assert.are.equal(path .. "\n", out)
    os.remove(path)
  end)

  it("runs -e statements in order, then the script", function()
    local path = script("print(g + 1)\n")
    local out, _, code = host("-e 'g = 1' -e 'g = g * 10' " .. q(path))
    os.remove(path)
    assert.are.equal("11\n", out)
    assert.are.equal(0, code)
  end)

  it("runs -e alone without starting the REPL", function()
    local out, _, code = host("-e 'print(1+2)'", "print('not read')\n")
    assert.are.equal("3\n", out)
    assert.are.equal(0, code)
  end)

  it("keeps the script's globals in the REPL with -i", function()
    local path = script("g = 41\nlocal hidden = 1\n")
    local out, _, code = host("-i " .. q(path), "g + 1\nhidden\n")
    os.remove(path)
    assert.are.equal("42\nnil\n", out)
    assert.are.equal(0, code)
  end)

  it("runs a script from stdin with -", function()
    local out, _, code = host("- x y", "print(select('#', ...), ...)\n")
    assert.are.equal("2\tx\ty\n", out)
    assert.are.equal(0, code)
  end)

  it("defines the global miles before the script runs", function()
    local out = host("-e 'print(type(miles))'")
    assert.are.equal(type(rawget(_G, "miles")) .. "\n", out)
  end)

  it("prints the version", function()
    local out, _, code = host("--version")
    assert.truthy(out:find("^miles 0%.1%.0"))
    assert.truthy(out:find("Lua 5%.4"))
    assert.are.equal(0, code)
  end)

  it("prints usage with --help and refuses a bad option", function()
    local out, _, code = host("--help")
    assert.truthy(out:find("^usage: miles"))
    assert.are.equal(0, code)
    local _, err, bad = host("--no-such-option")
    assert.truthy(err:find("unrecognized option '--no-such-option'", 1, true))
    assert.are.equal(1, bad)
  end)

  it("exits with 1 and a traceback when the script fails", function()
    local path = script("local function f() error('kaput') end\nf()\n")
    local out, err, code = host(q(path))
    os.remove(path)
    assert.are.equal("", out)
    assert.are.equal(1, code)
    assert.truthy(err:find("^.*miles: [^\n]*: kaput\nstack traceback:"))
    assert.truthy(err:find("in local 'f'", 1, true))
  end)

  it("exits with 1 on a missing script, a syntax error or a failing -e", function()
    local _, err, code = host("/no/such/script.lua")
    assert.are.equal(1, code)
    assert.truthy(err:find("cannot open /no/such/script.lua", 1, true))
    local path = script("x = = 1\n")
    local _, err2, code2 = host(q(path))
    os.remove(path)
    assert.are.equal(1, code2)
    assert.truthy(err2:find("unexpected symbol", 1, true))
    local _, _, code3 = host("-e 'error(1)'")
    assert.are.equal(1, code3)
  end)

  it("stops a script on Ctrl-C with 'interrupted!'", function()
    local out, err, code = host("-e " .. q(SELF_INTERRUPT .. " while true do end print('no')"))
    assert.are.equal("", out)
    assert.are.equal(1, code)
    assert.truthy(err:find("miles: interrupted!\nstack traceback:", 1, true))
  end)
end)

local has_repl = type(rawget(_G, "miles")) == "table" and type(miles.repl) == "function"

describe("miles.repl()", function()
  (has_repl and it or pending)("runs the REPL on the script's globals", function()
    local path = script("y = 7\nmiles.repl()\nprint('after', y)\n")
    local out, _, code = host(q(path), "y\ny = 8\nexit\nprint('not run')\n")
    os.remove(path)
    assert.are.equal("7\nafter\t8\n", out)
    assert.are.equal(0, code)
  end)
end)
