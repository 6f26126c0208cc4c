--[[
  A settled call whose prices were corrected (`asterbill cdr-sync`, from Asterisk's own CDR):
  the lifetime totals of its three levels and its booth's unbilled amount follow the new
  prices, once per operation id. Each level's `used` moves by the credit operations of the
  same correction (creditOp-2.lua), not here.

  KEYS[1]: balances hash; KEYS[2]: applied-operations hash (op id -> "correct").
  ARGV[1]: op id; ARGV[2], ARGV[3], ARGV[4]: the clid, group and reseller field prefixes
           (c<id>, g<id>, r<id>);
  ARGV[5], ARGV[6], ARGV[7]: change of the customer, callshop and reseller prices, signed
           micro-units;
  ARGV[8]: 1 when the call is still unbilled at its booth (the booth's unbilled moves by the
           customer change), else 0.
  A level not in Redis is left alone (provisioning starts it from MySQL, which has it).
  Returns "OK", or "ALREADY" when this op id was applied before.
  Errors: ERR_BAD_ARGS.
]]
local opId = ARGV[1]
if redis.call("HGET", KEYS[2], opId) then
  return "ALREADY"
end
local change = {tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])}
if opId == "" then return redis.error_reply("ERR_BAD_ARGS op id") end
for i = 1, 3 do
  if change[i] == nil or change[i] ~= math.floor(change[i]) then
    return redis.error_reply("ERR_BAD_ARGS change " .. tostring(ARGV[4 + i]))
  end
  if not string.match(ARGV[1 + i], "^[cgr]%d+$") then
    return redis.error_reply("ERR_BAD_ARGS level " .. ARGV[1 + i])
  end
end
for i = 2, 4 do
  local level = ARGV[i]
  if redis.call("HGET", KEYS[1], level .. ".type") then
    redis.call("HINCRBY", KEYS[1], level .. ".tot_c", change[1])
    redis.call("HINCRBY", KEYS[1], level .. ".tot_g", change[2])
    redis.call("HINCRBY", KEYS[1], level .. ".tot_r", change[3])
    if i == 2 and ARGV[8] == "1" then
      redis.call("HINCRBY", KEYS[1], level .. ".unbilled", change[1])
    end
  end
end
redis.call("HSET", KEYS[2], opId, "correct")
return "OK"
