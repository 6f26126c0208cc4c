--[[
  Find the rate of each table for a dialed number: the Lua twin of rating/select.py.

  All KEYS share one hash tag (one reseller's rate books, or the global ones), so the script
  runs unchanged on Redis Cluster; rating/book.py calls it once per tag, pipelined.

  KEYS: rate-scope hashes (field "<dialprefix>|<numlen>" -> encoded row), grouped by table,
        each group most specific scope first.
  ARGV[1]: the number (digits, leading digits already stripped; may be empty).
  ARGV[2]: T, the number of groups; ARGV[3..2+T]: how many KEYS each group has.
  Returns: T strings, per group the encoded row of the first hit
           ("id|connect|initblock|rateinitial|billingblock|destination"), or "" for none.
  Order inside one scope (DESIGN.md section 3): longest prefix first, on one prefix the exact
  numlen before numlen 0; then "default" (exact numlen, then 0). The first scope with any hit
  wins.
]]
local number = ARGV[1]
local n = #number
local fields = {}
for len = n, 1, -1 do
  local prefix = string.sub(number, 1, len)
  fields[#fields + 1] = prefix .. "|" .. n
  fields[#fields + 1] = prefix .. "|0"
end
fields[#fields + 1] = "default|" .. n
if n > 0 then fields[#fields + 1] = "default|0" end

local groups = tonumber(ARGV[2])
local out = {}
local k = 1
for g = 1, groups do
  local size = tonumber(ARGV[2 + g])
  local hit = ""
  for s = 0, size - 1 do
    if hit == "" then
      local values = redis.call("HMGET", KEYS[k + s], unpack(fields))
      for i = 1, #values do
        if values[i] then hit = values[i]; break end
      end
    end
  end
  out[g] = hit
  k = k + size
end
return out
