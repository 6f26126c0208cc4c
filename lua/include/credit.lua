--[[
  Included by the credit scripts (lua/scripts.py). Needs lua/include/price.lua before it.

  Balances: one hash per reseller tag, field "<level><id>.<attr>", level c (clid), g (group),
  r (reseller). attrs: limit, used (micro-units; used = curcredit, credit used so far),
  type ("none" | "prepaid" | "postpaid"), locked (c: "1"), deposit (c: micro-units, absent =
  none), unbilled (c: customer prices of unbilled calls, running calls included),
  cmul / gmul (g: customer / callshop billsec multiple), mul (r: reseller multiple),
  tot_c / tot_g / tot_r (lifetime customer / callshop / reseller prices of ended calls).

  A call (hash `calls`, field = call id) is one text, two parts around ";":
    clid, group, answer_ms, status (0 running | 1 cut),
    paid_c, covered_c, paid_g, covered_g, paid_r, covered_r ; then for each level c, g, r:
    rate id, connect, initblock, rateinitial, billingblock, multiple
  paid is what the level has paid so far, covered the last billsec it paid for. The part
  after ";" never changes, so a batch parses each distinct one once.
  The call may run until billsec reaches min(covered) + 1: that moment is its due time.
]]
local INF = 1e15           -- "covered forever" (no further block ever costs more)

-- redis.call(cmd, key, items...) in slices: Lua's unpack stops at a few thousand values.
local UNPACK_SLICE = 1000  -- even, so field/value pairs stay together
local function callSliced(cmd, key, items)
  local out = {}
  for first = 1, #items, UNPACK_SLICE do
    local last = math.min(first + UNPACK_SLICE - 1, #items)
    local reply = redis.call(cmd, key, unpack(items, first, last))
    if type(reply) == "table" then
      for i = 1, #reply do out[#out + 1] = reply[i] end
    end
  end
  return out
end

local NUM = "(%d+)"
local DYNAMIC = "^" .. string.rep(NUM .. ",", 9) .. NUM .. ";(.+)$"
local STATIC = "^" .. string.rep(NUM .. ",", 17) .. NUM .. "$"
local DYNAMIC_FORMAT = string.rep("%.0f,", 9) .. "%.0f;"
local STATIC_FORMAT = string.rep("%.0f,", 17) .. "%.0f"
local STATIC_CACHE = {}

local function staticParams(static)
  local params = STATIC_CACHE[static]
  if params == nil then
    local v = {string.match(static, STATIC)}
    if #v ~= 18 then return nil end
    params = {}
    for i = 1, 3 do
      local o = (i - 1) * 6
      params[i] = {tonumber(v[o + 1]), tonumber(v[o + 2]), tonumber(v[o + 3]),
                   tonumber(v[o + 4]), tonumber(v[o + 5]), tonumber(v[o + 6])}
      if params[i][5] < 1 then return nil end
    end
    STATIC_CACHE[static] = params
  end
  return params
end

local function unpackCall(text)
  local clid, group, answer, status, p1, c1, p2, c2, p3, c3, static =
    string.match(text, DYNAMIC)
  if clid == nil then return nil end
  local params = staticParams(static)
  if params == nil or (status ~= "0" and status ~= "1") then return nil end
  local call = {clid = tonumber(clid), group = tonumber(group), answer = tonumber(answer),
                status = tonumber(status), static = static, lv = {}}
  local paid = {tonumber(p1), tonumber(p2), tonumber(p3)}
  local covered = {tonumber(c1), tonumber(c2), tonumber(c3)}
  for i = 1, 3 do
    local p = params[i]
    call.lv[i] = {rate = p[1], connect = p[2], init = p[3], permin = p[4], block = p[5],
                  mult = p[6], paid = paid[i], covered = covered[i]}
  end
  return call
end

local function staticOf(lv)
  local a, b, c = lv[1], lv[2], lv[3]
  return string.format(STATIC_FORMAT,
    a.rate, a.connect, a.init, a.permin, a.block, a.mult,
    b.rate, b.connect, b.init, b.permin, b.block, b.mult,
    c.rate, c.connect, c.init, c.permin, c.block, c.mult)
end

local function packCall(call)
  local a, b, c = call.lv[1], call.lv[2], call.lv[3]
  if call.static == nil then call.static = staticOf(call.lv) end
  return string.format(DYNAMIC_FORMAT, call.clid, call.group, call.answer, call.status,
    a.paid, a.covered, b.paid, b.covered, c.paid, c.covered) .. call.static
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
  callSliced("HSET", self.key, args)
  self.dirty = {}
end

-- Field names are built once per level and script run: string building is what a batch of
-- thousands of boundaries would otherwise spend its time on.
local FIELD_CACHE = {}
local function fieldsOf(level)
  local f = FIELD_CACHE[level]
  if f == nil then
    f = {type = level .. ".type", limit = level .. ".limit", used = level .. ".used",
         deposit = level .. ".deposit", unbilled = level .. ".unbilled",
         locked = level .. ".locked", tot_c = level .. ".tot_c", tot_g = level .. ".tot_g",
         tot_r = level .. ".tot_r"}
    FIELD_CACHE[level] = f
  end
  return f
end

local ID_CACHE = {c = {}, g = {}, r = {}}
local function levelName(kind, id)
  local name = ID_CACHE[kind][id]
  if name == nil then
    name = kind .. string.format("%.0f", id)
    ID_CACHE[kind][id] = name
  end
  return name
end

local function levelIds(call, reseller)
  return {levelName("c", call.clid), levelName("g", call.group), levelName("r", reseller)}
end

-- Which level refuses `need` (micro-units per level), or nil when every one can pay.
-- Only prepaid levels refuse; the booth deposit bounds unbilled + the customer debit.
local REFUSALS = {"NO_CREDIT_CLID", "NO_CREDIT_GROUP", "NO_CREDIT_RESELLER"}

local function refusal(bal, ids, need)
  for i = 1, 3 do
    if need[i] > 0 then
      local f = fieldsOf(ids[i])
      if bal:get(f.type) == "prepaid" and bal:num(f.limit) - bal:num(f.used) < need[i] then
        return REFUSALS[i]
      end
    end
  end
  if need[1] > 0 then
    local f = fieldsOf(ids[1])
    local deposit = bal:get(f.deposit)
    if deposit ~= "" and bal:num(f.unbilled) + need[1] > tonumber(deposit) then
      return "DEPOSIT_REACHED"
    end
  end
  return nil
end

-- A level pushed past its limit by a call nobody could cut (DESIGN.md section 5): which one,
-- or nil. A prepaid level whose used exceeds its limit, or a booth whose unbilled calls exceed
-- its deposit, takes no new call until a charge (or a check-out) brings it back under.
local OVER = {"OVER_LIMIT_CLID", "OVER_LIMIT_GROUP", "OVER_LIMIT_RESELLER"}

local function overLimit(bal, ids)
  for i = 1, 3 do
    local f = fieldsOf(ids[i])
    if bal:get(f.type) == "prepaid" and bal:num(f.used) > bal:num(f.limit) then
      return OVER[i]
    end
  end
  local f = fieldsOf(ids[1])
  local deposit = bal:get(f.deposit)
  if deposit ~= "" and bal:num(f.unbilled) > tonumber(deposit) then return "DEPOSIT_EXCEEDED" end
  return nil
end

-- The meta text (the listener's JSON, `"flags":[...]` written without spaces) with one more
-- flag, so the CDR says what the script decided; a text without a flags list is kept as is.
local function withFlag(meta, flag)
  local at = string.find(meta, '"flags":[', 1, true)
  if at == nil then return meta end
  local head, tail = string.sub(meta, 1, at + 8), string.sub(meta, at + 9)
  if string.sub(tail, 1, 1) == "]" then return head .. '"' .. flag .. '"' .. tail end
  return head .. '"' .. flag .. '",' .. tail
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
      bal:add(fieldsOf(ids[i]).used, need[i])
      l.paid = newPaid[i]
      l.covered = coveredThrough(l, billsec)
    end
  end
  bal:add(fieldsOf(ids[1]).unbilled, need[1])
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

