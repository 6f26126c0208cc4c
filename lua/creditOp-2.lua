--[[
  A credit operation on one level, applied once per operation id.

  KEYS[1]: balances hash; KEYS[2]: applied-operations hash (op id -> kind|level|used before).
  ARGV[1]: op id; ARGV[2]: kind; ARGV[3]: level field prefix (c<id>, g<id> or r<id>);
  ARGV[4]: value: micro-units for charge, refund, set_limit, set_deposit ("" = no deposit),
           checkout; none | prepaid | postpaid for set_limit_type; ignored by lock, unlock.
  Kinds: charge (money received: used -= value), refund (money paid back: used += value),
         set_limit, set_limit_type, lock, unlock, set_deposit, checkout (the booth was paid:
         unbilled -= value). lock, unlock, set_deposit and checkout are for clids only.
  ARGV[5] (optional): the operation's version (its MySQL row id, increasing per level in
           commit order). An absolute operation (set_limit, set_limit_type, lock / unlock,
           set_deposit) older than the last one applied to the same attribute is recorded as
           applied and changes nothing, so a late replay never lands over a newer value.
  Returns {"OK", used_before} or {"ALREADY", used_before} (this op id was applied before),
  or {"STALE", used_before} (a newer value of the attribute was applied first).
  Errors: ERR_BAD_ARGS, ERR_UNKNOWN_LEVEL <level>, ERR_CHECKOUT_TOO_LARGE.
]]
local opId, kind, level, value = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local done = redis.call("HGET", KEYS[2], opId)
if done then
  return {"ALREADY", tonumber(string.match(done, "([^|]*)$"))}
end
if opId == "" or not string.match(level, "^[cgr]%d+$") then
  return redis.error_reply("ERR_BAD_ARGS credit op")
end
if not redis.call("HGET", KEYS[1], level .. ".type") then
  return redis.error_reply("ERR_UNKNOWN_LEVEL " .. level)
end
local isClid = string.sub(level, 1, 1) == "c"
local amount = tonumber(value)
local moneyKinds = {charge = true, refund = true, set_limit = true, checkout = true}
if moneyKinds[kind] and (amount == nil or amount < 0 or amount ~= math.floor(amount)) then
  return redis.error_reply("ERR_BAD_ARGS amount " .. tostring(value))
end
local used = tonumber(redis.call("HGET", KEYS[1], level .. ".used") or "0")
local versioned = {set_limit = "limit", set_limit_type = "type", lock = "locked",
                   unlock = "locked", set_deposit = "deposit"}
local version = tonumber(ARGV[5] or "")
local verField = nil
if version and versioned[kind] then
  if (kind == "lock" or kind == "unlock" or kind == "set_deposit") and not isClid then
    return redis.error_reply("ERR_BAD_ARGS kind " .. kind .. " for " .. level)
  end
  verField = level .. ".ver_" .. versioned[kind]
  if version <= tonumber(redis.call("HGET", KEYS[1], verField) or "0") then
    redis.call("HSET", KEYS[2], opId, kind .. "|" .. level .. "|" .. string.format("%.0f", used))
    return {"STALE", used}
  end
end
if kind == "charge" then
  redis.call("HINCRBY", KEYS[1], level .. ".used", -amount)
elseif kind == "refund" then
  redis.call("HINCRBY", KEYS[1], level .. ".used", amount)
elseif kind == "set_limit" then
  redis.call("HSET", KEYS[1], level .. ".limit", value)
elseif kind == "set_limit_type" then
  if value ~= "none" and value ~= "prepaid" and value ~= "postpaid" then
    return redis.error_reply("ERR_BAD_ARGS limit type " .. value)
  end
  redis.call("HSET", KEYS[1], level .. ".type", value)
elseif isClid and (kind == "lock" or kind == "unlock") then
  redis.call("HSET", KEYS[1], level .. ".locked", kind == "lock" and "1" or "0")
elseif isClid and kind == "set_deposit" then
  if value == "" then
    redis.call("HDEL", KEYS[1], level .. ".deposit")
  elseif amount == nil or amount < 0 or amount ~= math.floor(amount) then
    return redis.error_reply("ERR_BAD_ARGS deposit " .. value)
  else
    redis.call("HSET", KEYS[1], level .. ".deposit", value)
  end
elseif isClid and kind == "checkout" then
  local unbilled = tonumber(redis.call("HGET", KEYS[1], level .. ".unbilled") or "0")
  if amount > unbilled then return redis.error_reply("ERR_CHECKOUT_TOO_LARGE") end
  redis.call("HINCRBY", KEYS[1], level .. ".unbilled", -amount)
else
  return redis.error_reply("ERR_BAD_ARGS kind " .. kind .. " for " .. level)
end
if verField then redis.call("HSET", KEYS[1], verField, ARGV[5]) end
redis.call("HSET", KEYS[2], opId, kind .. "|" .. level .. "|" .. string.format("%.0f", used))
return {"OK", used}
