--[[
  authorize: at dial, before answer. May this call start, and for how long can it run?
  Writes nothing.

  KEYS[1]: balances hash of the reseller tag.
  ARGV[1]: reseller id; ARGV[2]: clid id; ARGV[3]: group id;
  ARGV[4..21]: for levels c, g, r: rate id, connect (micro-units), initblock (s),
               rateinitial (micro-units/min), billingblock (s), billsec multiple (1e-4).
  Returns {"ALLOW", seconds} (seconds the prepaid levels and the deposit can pay; -1 = no
          limit) or {"DENY", reason}, reason LOCKED | NO_CREDIT_CLID | NO_CREDIT_GROUP |
          NO_CREDIT_RESELLER | DEPOSIT_REACHED | PRICE_OVERFLOW | OVER_LIMIT_CLID |
          OVER_LIMIT_GROUP | OVER_LIMIT_RESELLER | DEPOSIT_EXCEEDED (a level a call nobody
          could cut pushed past its limit: no new call until it is back under it).
  Errors: ERR_BAD_ARGS, ERR_UNKNOWN_LEVEL <level> (not provisioned in Redis).
]]
--- @include "price"
--- @include "credit"

local reseller = tonumber(ARGV[1])
local call = {clid = tonumber(ARGV[2]), group = tonumber(ARGV[3])}
call.lv = levelsFromArgs(4)
if not (reseller and call.clid and call.group and call.lv) then
  return redis.error_reply("ERR_BAD_ARGS authorize")
end
local bal = newBalances(KEYS[1])
local ids = levelIds(call, reseller)
local unknown = levelsKnown(bal, ids)
if unknown then return redis.error_reply("ERR_UNKNOWN_LEVEL " .. unknown) end
if bal:get(fieldsOf(ids[1]).locked) == "1" then return {"DENY", "LOCKED"} end
local over = overLimit(bal, ids)
if over then return {"DENY", over} end

local need = {}
for i = 1, 3 do
  need[i] = levelPrice(call.lv[i], 1)
  if need[i] == nil then return {"DENY", "PRICE_OVERFLOW"} end
end
local refused = refusal(bal, ids, need)
if refused then return {"DENY", refused} end

-- Longest billsec whose price `avail` still pays at level l (-1: no limit). The paid-to
-- positions are init + k x block billed seconds; estimate k, then correct it exactly.
local function affordable(l, avail)
  if l.mult == 0 or l.permin == 0 then
    if l.connect <= avail then return -1 end
    return 0
  end
  local function fits(k)
    local p = priceOfBilled(l.init + k * l.block, l.connect, l.init, l.permin, l.block)
    return p ~= nil and p <= avail
  end
  local kMin = 0
  if l.init == 0 then kMin = 1 end
  if not fits(kMin) then return 0 end
  local k = math.floor((avail - l.connect) * 60 / (l.block * l.permin))
  if k < kMin then k = kMin end
  while k > kMin and not fits(k) do k = k - 1 end
  while fits(k + 1) do k = k + 1 end
  return idiv((l.init + k * l.block) * 10000, l.mult)
end

local best = -1
local function limitTo(seconds)
  if seconds >= 0 and (best < 0 or seconds < best) then best = seconds end
end
for i = 1, 3 do
  local f = fieldsOf(ids[i])
  if bal:get(f.type) == "prepaid" then
    limitTo(affordable(call.lv[i], bal:num(f.limit) - bal:num(f.used)))
  end
end
local deposit = bal:get(fieldsOf(ids[1]).deposit)
if deposit ~= "" then
  limitTo(affordable(call.lv[1], tonumber(deposit) - bal:num(fieldsOf(ids[1]).unbilled)))
end
return {"ALLOW", best}
