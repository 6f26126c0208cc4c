--[[
  extend: just before a block boundary, pay the next block at each level whose block ends
  there. Replaying it changes nothing (the boundary is named by the caller).

  KEYS[1]: balances hash; KEYS[2]: calls hash; KEYS[3]: due sorted set; KEYS[4]: ended hash.
  ARGV[1]: reseller id; ARGV[2]: call id; ARGV[3]: the boundary: the first billsec not yet
           paid (as returned in due_ms = answer + boundary x 1000).
  Returns {"OK", due_ms}: paid; next due time (-1: never);
          {"HANGUP", boundary_ms, reason}: a prepaid level or the deposit cannot pay: nothing
          was paid, the call is cut and left the due index; hang it up before boundary_ms;
          {"ALREADY", due_ms}: this boundary was paid before, or the call was cut before;
          {"ENDED", 0}: the call has ended.
  Errors: ERR_BAD_ARGS, ERR_UNKNOWN_CALL <id>, ERR_CORRUPT_CALL <id>.
]]
--- @include "price"
--- @include "credit"

local reseller, id, boundary = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
if not (reseller and boundary) or boundary < 1 or boundary ~= math.floor(boundary) then
  return redis.error_reply("ERR_BAD_ARGS extend")
end
local text = redis.call("HGET", KEYS[2], id)
if not text then
  if redis.call("HEXISTS", KEYS[4], id) == 1 then return {"ENDED", 0} end
  return redis.error_reply("ERR_UNKNOWN_CALL " .. id)
end
local call = unpackCall(text)
if call == nil then return redis.error_reply("ERR_CORRUPT_CALL " .. id) end
if call.status == 1 or callCovered(call) + 1 ~= boundary then
  return {"ALREADY", dueTime(call) or -1}
end
local bal = newBalances(KEYS[1])
local refused = payBoundary(bal, call, boundary, reseller)
if refused then
  call.status = 1
  redis.call("HSET", KEYS[2], id, packCall(call))
  redis.call("ZREM", KEYS[3], id)
  return {"HANGUP", call.answer + boundary * 1000, refused}
end
bal:flush()
redis.call("HSET", KEYS[2], id, packCall(call))
local due = dueTime(call)
if due then redis.call("ZADD", KEYS[3], due, id) else redis.call("ZREM", KEYS[3], id) end
return {"OK", due or -1}
