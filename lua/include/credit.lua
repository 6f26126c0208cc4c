--[[
  Included by the credit scripts (lua/scripts.py). Needs lua/include/price.lua before it.

  Balances: one hash per reseller tag, field "<level><id>.<attr>", level c (clid), g (group),
  r (reseller). attrs: limit, used (micro-units; used = curcredit, credit used so far),
  type ("none" | "prepaid" | "postpaid"), locked (c: "1"), deposit (c: micro-units, absent =
  none), unbilled (c: customer prices of unbilled calls, running calls included),
  cmul / gmul (g: customer / callshop billsec multiple), mul (r: reseller multiple),
  tot_c / tot_g / tot_r (lifetime customer / callshop / reseller prices of ended calls).

  A call (hash `calls`, field = call id) is one comma-separated string:
    clid, group, answer_ms, status (0 running | 1 cut), then for each level c, g, r:
    rate id, connect, initblock, rateinitial, billingblock, multiple, paid, covered
  where paid is what the level has paid so far and covered the last billsec it paid for.
  The call may run until billsec reaches min(covered) + 1: that moment is its due time.
]]
local INF = 1e15           -- "covered forever" (no further block ever costs more)
local LEVELS = {"c", "g", "r"}
local PER_LEVEL = 8

local function unpackCall(text)
  local v = {}
  for item in string.gmatch(text, "([^,]+)") do
    local n = tonumber(item)
    if n == nil then return nil end
    v[#v + 1] = n
  end
  if #v ~= 4 + 3 * PER_LEVEL then return nil end
  local call = {clid = v[1], group = v[2], answer = v[3], status = v[4], lv = {}}
  if call.status ~= 0 and call.status ~= 1 then return nil end
  for i = 1, 3 do
    local o = 4 + (i - 1) * PER_LEVEL
    call.lv[i] = {rate = v[o + 1], connect = v[o + 2], init = v[o + 3], permin = v[o + 4],
                  block = v[o + 5], mult = v[o + 6], paid = v[o + 7], covered = v[o + 8]}
  end
  return call
end

local function packCall(call)
  local out = {call.clid, call.group, call.answer, call.status}
  for i = 1, 3 do
    local l = call.lv[i]
    out[#out + 1] = l.rate; out[#out + 1] = l.connect; out[#out + 1] = l.init
    out[#out + 1] = l.permin; out[#out + 1] = l.block; out[#out + 1] = l.mult
    out[#out + 1] = l.paid; out[#out + 1] = l.covered
  end
  for i = 1, #out do out[i] = string.format("%.0f", out[i]) end
  return table.concat(out, ",")
end

local function levelPrice(l, billsec)
  return priceOfBilled(billedSeconds(billsec, l.mult), l.connect, l.init, l.permin, l.block)
end

-- The last billsec whose price equals the price of `billsec` (what paying it covers).
local function coveredThrough(l, billsec)
  if l.mult == 0 or l.permin == 0 then return INF end  -- no later second costs more
  local billed = billedSeconds(billsec, l.mult)
  local paidTo = l.init
  if billed > l.init then
    paidTo = l.init + idiv(billed - l.init + l.block - 1, l.block) * l.block
  end
  return idiv(paidTo * 10000, l.mult)
end

local function callCovered(call)
  local c = INF
  for i = 1, 3 do if call.lv[i].covered < c then c = call.lv[i].covered end end
  return c
end

local function dueTime(call)
  local c = callCovered(call)
  if c >= INF then return nil end
  return call.answer + (c + 1) * 1000
end

-- Balances read once per script run and written back once (the batch path's speed).
local Balances = {}
Balances.__index = Balances

local function newBalances(key)
  return setmetatable({key = key, cache = {}, dirty = {}}, Balances)
end

function Balances:get(field)
  local v = self.cache[field]
  if v == nil then
    v = redis.call("HGET", self.key, field)
    if v == false then v = "" end
    self.cache[field] = v
  end
  return v
end

function Balances:num(field)
  local v = self:get(field)
  if v == "" then return 0 end
  return tonumber(v)
end

function Balances:set(field, value)
  self.cache[field] = value
  self.dirty[field] = true
end

function Balances:add(field, delta)
  if delta ~= 0 then self:set(field, self:num(field) + delta) end
end

function Balances:flush()
  local args = {}
  for field in pairs(self.dirty) do
    local v = self.cache[field]
    if type(v) == "number" then v = string.format("%.0f", v) end
    args[#args + 1] = field
    args[#args + 1] = v
  end
  if #args > 0 then redis.call("HSET", self.key, unpack(args)) end
  self.dirty = {}
end

local function levelIds(call, reseller)
  return {"c" .. call.clid, "g" .. call.group, "r" .. reseller}
end

-- Which level refuses `need` (micro-units per level), or nil when every one can pay.
-- Only prepaid levels refuse; the booth deposit bounds unbilled + the customer debit.
local REFUSALS = {"NO_CREDIT_CLID", "NO_CREDIT_GROUP", "NO_CREDIT_RESELLER"}

local function refusal(bal, ids, need)
  for i = 1, 3 do
    if need[i] > 0 and bal:get(ids[i] .. ".type") == "prepaid" then
      if bal:num(ids[i] .. ".limit") - bal:num(ids[i] .. ".used") < need[i] then
        return REFUSALS[i]
      end
    end
  end
  local deposit = bal:get(ids[1] .. ".deposit")
  if deposit ~= "" and need[1] > 0 then
    if bal:num(ids[1] .. ".unbilled") + need[1] > tonumber(deposit) then
      return "DEPOSIT_REACHED"
    end
  end
  return nil
end

-- Pay the boundary `billsec` (the first billsec not yet covered) at every level whose block
-- ends there. Returns nil when paid, or the refusal reason (and then nothing was paid).
local function payBoundary(bal, call, billsec, reseller)
  local ids = levelIds(call, reseller)
  local need, newPaid = {0, 0, 0}, {}
  for i = 1, 3 do
    local l = call.lv[i]
    newPaid[i] = l.paid
    if l.covered < billsec then
      local p = levelPrice(l, billsec)
      if p == nil then return "PRICE_OVERFLOW" end
      newPaid[i] = p
      need[i] = p - l.paid
    end
  end
  local refused = refusal(bal, ids, need)
  if refused then return refused end
  for i = 1, 3 do
    local l = call.lv[i]
    if l.covered < billsec then
      bal:add(ids[i] .. ".used", need[i])
      l.paid = newPaid[i]
      l.covered = coveredThrough(l, billsec)
    end
  end
  bal:add(ids[1] .. ".unbilled", need[1])
  return nil
end

-- Rates and multiples from ARGV, six values per level from `base`: rate id, connect,
-- initblock, rateinitial, billingblock, multiple. nil when one is not a valid integer.
local function levelsFromArgs(base)
  local lv = {}
  for i = 1, 3 do
    local o = base + (i - 1) * 6
    local l = {rate = tonumber(ARGV[o]), connect = tonumber(ARGV[o + 1]),
               init = tonumber(ARGV[o + 2]), permin = tonumber(ARGV[o + 3]),
               block = tonumber(ARGV[o + 4]), mult = tonumber(ARGV[o + 5]), paid = 0,
               covered = 0}
    for _, k in ipairs({"rate", "connect", "init", "permin", "block", "mult"}) do
      if l[k] == nil or l[k] < 0 or l[k] ~= math.floor(l[k]) then return nil end
    end
    if l.block < 1 then return nil end
    lv[i] = l
  end
  return lv
end

local function levelsKnown(bal, ids)
  for i = 1, 3 do
    if bal:get(ids[i] .. ".type") == "" then return ids[i] end
  end
  return nil
end

local function endedRecord(call, endMs, billsec, finals)
  local v = {call.clid, call.group, call.answer, endMs, billsec, finals[1], finals[2],
             finals[3], call.lv[1].rate, call.lv[2].rate, call.lv[3].rate, call.status}
  for i = 1, #v do v[i] = string.format("%.0f", v[i]) end
  return table.concat(v, ",")
end
