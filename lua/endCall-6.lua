--[[
  end: at hangup, settle the call in Redis: the final price at each level for the real
  billsec, the difference to what was pre-paid debited or refunded, lifetime totals updated,
  the call moved to the ended hash for settlement (with its meta text, settlement
  has everything it needs for the CDR). A second end changes nothing.

  KEYS[1]: balances hash; KEYS[2]: calls hash; KEYS[3]: due sorted set; KEYS[4]: ended hash;
  KEYS[5]: meta hash (call id -> the listener's description of the call);
  KEYS[6]: done sorted set (call id -> end ms; trimmed here to the last ARGV[8] ms).
  ARGV[1]: reseller id; ARGV[2]: call id; ARGV[3]: hangup time (ms since the epoch);
  ARGV[4]: billsec (whole seconds from answer to hangup, rounded down, as Asterisk's CDR);
  ARGV[5]: optional meta text replacing the one given at answer (adds the hangup cause);
  ARGV[6]: optional short-call rule: answered calls of at most this many seconds cost the
           customer nothing (0 or absent: every call is charged);
  ARGV[7]: how far the billsec is to be believed at a prepaid level or a booth deposit
           (postpaid and no-limit levels always pay the full price):
           live (default): the end was seen while the system could cut: a level pays at
             most down to its limit (deposit), never below: flag capped_at_limit;
           estimated: the end was not seen, billsec is an upper bound: a level pays at
             most what the call had paid already: flag capped_at_paid;
           real: the call talked past its paid time while nobody could cut it (listener
             down, CONTINUE failure policy): the full price, and flag over_limit when a
             level ends over its limit (it then takes no new call: authorizeCall);
  ARGV[8]: how long (ms) the done set remembers an ended call (default 3 days).
  Returns {"OK", final_c, final_g, final_r} or {"ALREADY", final_c, final_g, final_r};
          {"ENDED", 0, 0, 0}: the call ended and was settled before (nothing changed).
  Ended record (KEYS[4], field = call id): clid, group, answer_ms, end_ms, billsec, final_c,
  final_g, final_r, rate id c, rate id g, rate id r, status (1 = was cut).
  Errors: ERR_BAD_ARGS, ERR_BAD_TIME, ERR_UNKNOWN_CALL <id>, ERR_CORRUPT_CALL <id>,
          ERR_PRICE_OVERFLOW.
]]
--- @include "price"
--- @include "credit"

local reseller, id = tonumber(ARGV[1]), ARGV[2]
local endMs, billsec = tonumber(ARGV[3]), tonumber(ARGV[4])
if not (reseller and endMs and billsec) or billsec ~= math.floor(billsec) then
  return redis.error_reply("ERR_BAD_ARGS end")
end
local mode = ARGV[7] or ""
if mode == "" then mode = "live" end
local keepMs = tonumber(ARGV[8] or "") or 259200000
if mode ~= "live" and mode ~= "estimated" and mode ~= "real" then
  return redis.error_reply("ERR_BAD_ARGS end mode " .. mode)
end
local done = redis.call("HGET", KEYS[4], id)
if done then
  local v = {}
  for item in string.gmatch(done, "([^,]+)") do v[#v + 1] = tonumber(item) end
  return {"ALREADY", v[6], v[7], v[8]}
end
local text = redis.call("HGET", KEYS[2], id)
if not text then
  if redis.call("ZSCORE", KEYS[6], id) then return {"ENDED", 0, 0, 0} end
  return redis.error_reply("ERR_UNKNOWN_CALL " .. id)
end
local call = unpackCall(text)
if call == nil then return redis.error_reply("ERR_CORRUPT_CALL " .. id) end
-- Billsec counts whole seconds from answer to hangup: it cannot be negative, nor exceed the
-- time between them (one second of slack for clocks that round differently), nor 31 days.
if billsec < 0 or billsec > 2678400 or endMs < call.answer
    or billsec * 1000 > endMs - call.answer + 1000 then
  return redis.error_reply("ERR_BAD_TIME billsec " .. billsec .. " for " .. id)
end
local bal = newBalances(KEYS[1])
local ids = levelIds(call, reseller)
local finals = {}
for i = 1, 3 do
  finals[i] = levelPrice(call.lv[i], billsec)
  if finals[i] == nil then return redis.error_reply("ERR_PRICE_OVERFLOW " .. id) end
end
local shortCall = tonumber(ARGV[6] or "0") or 0
if shortCall > 0 and billsec <= shortCall then finals[1] = 0 end
-- What each prepaid level (and the booth deposit) may still be charged beyond what the call
-- paid: nil = no bound (ARGV[7]).
local flag = nil
if mode ~= "real" then
  for i = 1, 3 do
    local l, f = call.lv[i], fieldsOf(ids[i])
    local room = nil
    if bal:get(f.type) == "prepaid" then room = bal:num(f.limit) - bal:num(f.used) end
    local deposit = i == 1 and bal:get(f.deposit) or ""
    if deposit ~= "" then
      local left = tonumber(deposit) - bal:num(f.unbilled)
      if room == nil or left < room then room = left end
    end
    if room ~= nil then
      if mode == "estimated" or room < 0 then room = 0 end
      if finals[i] > l.paid + room then
        finals[i] = l.paid + room
        flag = mode == "live" and "capped_at_limit" or "capped_at_paid"
      end
    end
  end
end
for i = 1, 3 do
  local f = fieldsOf(ids[i])
  bal:add(f.used, finals[i] - call.lv[i].paid)
  bal:add(f.tot_c, finals[1])
  bal:add(f.tot_g, finals[2])
  bal:add(f.tot_r, finals[3])
end
bal:add(fieldsOf(ids[1]).unbilled, finals[1] - call.lv[1].paid)
if mode == "real" and overLimit(bal, ids) then flag = "over_limit" end
bal:flush()
redis.call("HDEL", KEYS[2], id)
redis.call("ZREM", KEYS[3], id)
redis.call("HSET", KEYS[4], id, endedRecord(call, endMs, billsec, finals))
local meta = ARGV[5] or ""
if flag then
  if meta == "" then meta = redis.call("HGET", KEYS[5], id) or "" end
  meta = withFlag(meta, flag)
end
if meta ~= "" then redis.call("HSET", KEYS[5], id, meta) end
redis.call("ZADD", KEYS[6], endMs, id)
redis.call("ZREMRANGEBYSCORE", KEYS[6], "-inf", "(" .. string.format("%.0f", endMs - keepMs))
return {"OK", finals[1], finals[2], finals[3]}
