--[[
  extend, batch form: pay the boundaries of every call of this hash tag that is due before
  `until`, in one script run (balances read once and written once).

  KEYS[1]: balances hash; KEYS[2]: calls hash; KEYS[3]: due sorted set; KEYS[4]: ended hash.
  ARGV[1]: reseller id; ARGV[2]: until (ms since the epoch: now + the hang-up guard time);
  ARGV[3]: at most this many boundaries in this run;
  ARGV[4]: at most this many boundaries of one call in this run (default 300).
  Every boundary of a due call that falls before `until` is paid, in order (so a listener
  that lagged catches up), up to ARGV[4] per call: a call with a huge backlog (an absurd
  answer time) pays the rest in later runs and never takes the whole run from the others.
  Returns {paid, next_due_ms, n, id1, boundary_ms1, reason1, ..., due_ms1, id1, ...}: how
          many boundaries were paid, the earliest due time left in the index (-1: none), the
          number n of calls cut in this run and those n calls (the unpaid boundary was not
          paid; hang it up before boundary_ms), then the new due time of every other call of
          this run (what the listener keeps to cut calls itself while Redis is away).
  A call in the index with no or corrupt state is removed from the index and reported with
  reason UNKNOWN_CALL or CORRUPT_CALL.
]]
--- @include "price"
--- @include "credit"

local reseller, untilMs, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local perCall = tonumber(ARGV[4] or "") or 300
if not (reseller and untilMs and limit) or limit < 1 or perCall < 1 then
  return redis.error_reply("ERR_BAD_ARGS extendDue")
end
local ids = redis.call("ZRANGEBYSCORE", KEYS[3], "-inf", untilMs, "LIMIT", 0, limit)
local bal = newBalances(KEYS[1])
local out = {0, -1, 0}
local states, dues, gone = {}, {}, {}
local texts = callSliced("HMGET", KEYS[2], ids)
for n, id in ipairs(ids) do
  local text = texts[n]
  local call = text and unpackCall(text)
  if not call or call.status == 1 then
    gone[#gone + 1] = id
    if not call then
      out[#out + 1] = id; out[#out + 1] = 0
      out[#out + 1] = text and "CORRUPT_CALL" or "UNKNOWN_CALL"
      out[3] = out[3] + 1
    end
  else
    -- Pay every boundary of this call that falls before `until` (catching up after a lag).
    local due = dueTime(call)
    local budget = perCall
    while due and due <= untilMs and out[1] < limit and budget > 0 do
      budget = budget - 1
      local boundary = callCovered(call) + 1
      local refused = payBoundary(bal, call, boundary, reseller)
      if refused then
        call.status = 1
        out[#out + 1] = id; out[#out + 1] = call.answer + boundary * 1000
        out[#out + 1] = refused
        out[3] = out[3] + 1
        due = nil
      else
        out[1] = out[1] + 1
        due = dueTime(call)
      end
    end
    if due then
      dues[#dues + 1] = due; dues[#dues + 1] = id
    else
      gone[#gone + 1] = id
    end
    states[#states + 1] = id
    states[#states + 1] = packCall(call)
  end
end
bal:flush()
callSliced("HSET", KEYS[2], states)
callSliced("ZADD", KEYS[3], dues)
callSliced("ZREM", KEYS[3], gone)
local first = redis.call("ZRANGE", KEYS[3], 0, 0, "WITHSCORES")
if first[2] then out[2] = tonumber(first[2]) end
for i = 1, #dues do out[#out + 1] = dues[i] end
return out
