--[[
  Included in every script that prices (see lua/scripts.py): the Lua twin of rating/price.py.

  Lua numbers are doubles. Every value here is an integer below 2^53, so each operation is
  exact; idiv divides exactly with math.fmod instead of trusting a rounded quotient.
  Units: money in micro-units (1e-6), multiple in ten-thousandths, times in whole seconds.
]]
local MAX_SAFE = 9007199254740991

local function idiv(a, b)  -- floor(a / b) for 0 <= a < 2^53, b >= 1
  return (a - math.fmod(a, b)) / b
end

local function billedSeconds(billsec, multiple)
  if billsec <= 0 then return 0 end
  return idiv(billsec * multiple + 9999, 10000)
end

-- Price of `billed` seconds, or nil when it would not be exact (above 2^53 - 1 micro-units).
local function priceOfBilled(billed, connect, initblock, perMinute, block)
  if billed <= 0 then return 0 end
  local charged = 0
  if billed > initblock then
    charged = idiv(billed - initblock + block - 1, block) * block
  end
  local r = math.fmod(perMinute, 60)
  local q = (perMinute - r) / 60
  local total = connect + charged * q + idiv(2 * charged * r + 60, 120)
  if total > MAX_SAFE then return nil end
  return total
end
