-- miles.csv: RFC 4180 quoting, line ends, blank lines, empty fields, conversion,
-- and the errors for malformed text.
local csv = require "miles.csv"
local H = require "helpers"

describe("csv.parse", function()
  it("reads quoted fields with commas, doubled quotes and line breaks, CRLF and LF", function()
    local r = csv.parse('a,b\r\n1,"x,""y""\nz"\n\n3,\n')
    assert.are.same({ { "a", "b" }, { "1", 'x,"y"\nz' }, { "3", "" } }, r)
  end)

  it("keeps empty fields, a last line without a line end, and no records for empty text", function()
    assert.are.same({ { "a", "", "b", "" }, { "", "" } }, csv.parse("a,,b,\n,"))
    assert.are.same({ { "a", "b" } }, csv.parse("a,b"))
    assert.are.same({}, csv.parse(""))
  end)

  it("passes every field through convert(cell, quoted)", function()
    local r = csv.parse('x,y\n1,"2"\n', function(c, quoted) return quoted and "q" .. c or tonumber(c) or c end)
    assert.are.same({ { "x", "y" }, { 1, "q2" } }, r)
  end)

  it("names the line and the problem of malformed text", function()
    H.raises(function() csv.parse('a\nb,"c\n') end, "line 2 is not valid CSV (a quote is not closed)")
    H.raises(function() csv.parse('a,"b"x\n') end, "line 1 is not valid CSV (text after a closing quote)")
    H.raises(function() csv.parse("a\rb") end, "line 1 is not valid CSV (a carriage return without a line feed)")
  end)
end)
