--[[
  Price many calls, each at one level (the operator tool `asterbill rates price --engine lua`
  and the tests that prove this twin equals rating/price.py).

  KEYS: none.
  ARGV: groups of six integers, one group per call:
    connect (micro-units), initblock (s), rateinitial (micro-units per minute),
    billingblock (s, >= 1), multiple (ten-thousandths), billsec (s, may be <= 0).
  Returns: an array with the price of each call in micro-units, in ARGV order.
  Errors: "ERR_BAD_ARGS ..." when ARGV is not groups of six integers in range,
          "ERR_PRICE_OVERFLOW <index>" when a price is not exact below 2^53 micro-units.
]]
--- @include "price"

local n = #ARGV
if n % 6 ~= 0 then
  return redis.error_reply("ERR_BAD_ARGS expected groups of 6, got " .. n .. " values")
end
local out = {}
for i = 1, n, 6 do
  local connect, initblock = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local perMinute, block = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local multiple, billsec = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  if not (connect and initblock and perMinute and block and multiple and billsec)
      or block < 1 or connect < 0 or initblock < 0 or perMinute < 0 or multiple < 0 then
    return redis.error_reply("ERR_BAD_ARGS call " .. ((i + 5) / 6))
  end
  local total = priceOfBilled(billedSeconds(billsec, multiple), connect, initblock,
                              perMinute, block)
  if total == nil then
    return redis.error_reply("ERR_PRICE_OVERFLOW " .. ((i + 5) / 6))
  end
  out[#out + 1] = total
end
return out
