--[[
  answer: record the call and pay its first block at every level (clid, group, reseller).

  KEYS[1]: balances hash; KEYS[2]: calls hash; KEYS[3]: due sorted set; KEYS[4]: ended hash;
  KEYS[5]: meta hash (call id -> the listener's description of the call, opaque here);
  KEYS[6]: done sorted set (ids of calls ended under this tag lately, scored by end time:
           a replay after settlement removed the call from `ended` is still refused).
  ARGV[1]: reseller id; ARGV[2]: call id; ARGV[3]: clid id; ARGV[4]: group id;
  ARGV[5]: answer time (ms since the epoch);
  ARGV[6..23]: for levels c, g, r: rate id, connect, initblock, rateinitial, billingblock,
               multiple (as authorizeCall);
  ARGV[24]: optional meta text (numbers, channel, destination: what settlement needs).
  Returns {"OK", due_ms}: paid; due_ms = when billsec reaches the first unpaid second
          (-1: never), the call is in the due index under that score;
          {"HANGUP", answer_ms, reason}: a prepaid level or the deposit cannot pay the first
          block: the call is recorded as cut (nothing paid; its end settles the real price);
          {"ALREADY", due_ms}: the call was answered before (nothing changed);
          {"ENDED", 0}: the call has ended already, even if it was settled since (nothing
          changed).
  Errors: ERR_BAD_ARGS, ERR_UNKNOWN_LEVEL <level>.
]]
--- @include "price"
--- @include "credit"

local reseller, id = tonumber(ARGV[1]), ARGV[2]
local call = {clid = tonumber(ARGV[3]), group = tonumber(ARGV[4]), answer = tonumber(ARGV[5]),
              status = 0}
call.lv = levelsFromArgs(6)
if not (reseller and call.clid and call.group and call.answer and call.lv and id ~= "")
    or call.answer < 0 or call.answer > 1e14 then
  return redis.error_reply("ERR_BAD_ARGS answer")
end
if redis.call("HEXISTS", KEYS[4], id) == 1 or redis.call("ZSCORE", KEYS[6], id) then
  return {"ENDED", 0}
end
local existing = redis.call("HGET", KEYS[2], id)
if existing then
  local old = unpackCall(existing)
  if old == nil then return redis.error_reply("ERR_CORRUPT_CALL " .. id) end
  return {"ALREADY", dueTime(old) or -1}
end
local bal = newBalances(KEYS[1])
local unknown = levelsKnown(bal, levelIds(call, reseller))
if unknown then return redis.error_reply("ERR_UNKNOWN_LEVEL " .. unknown) end

local refused = payBoundary(bal, call, 1, reseller)
if refused then
  call.status = 1
  redis.call("HSET", KEYS[2], id, packCall(call))
  if ARGV[24] and ARGV[24] ~= "" then redis.call("HSET", KEYS[5], id, ARGV[24]) end
  return {"HANGUP", call.answer, refused}
end
bal:flush()
redis.call("HSET", KEYS[2], id, packCall(call))
if ARGV[24] and ARGV[24] ~= "" then redis.call("HSET", KEYS[5], id, ARGV[24]) end
local due = dueTime(call)
if due then redis.call("ZADD", KEYS[3], due, id) end
return {"OK", due or -1}
