-- Release a lease held under a lease id: leave a tombstone with its token; announce it
-- only when someone found it held.
-- KEYS[1] lease; ARGV[1] lease id followed by '|', ARGV[2] the name's notification
-- channel, ARGV[3] lease name, ARGV[4] how long the tombstone lives (ms)
-- Returns 1 when released, 0 when it was not held under this id (left alone).
-- Server calls: GET, SET PX, and PUBLISH only if a contender marked the lease waited.
local v = redis.call('GET', KEYS[1])
local n = #ARGV[1]
if v and string.sub(v, 2, n + 1) == ARGV[1] then
  -- '~<token>': the next acquire takes a higher token (acquire.lua).
  local e = string.find(v, '|', n + 2, true)
  local token = e and string.sub(v, n + 2, e - 1)
  local r = token and tonumber(token) and redis.pcall('SET', KEYS[1], '~' .. token, 'PX', ARGV[4])
  if type(r) ~= 'table' or r.ok == nil then
    -- No token, or the tombstone was refused (OOM under noeviction): delete, as a
    -- release must work on a full server; the next token is floored by the clock.
    redis.call('DEL', KEYS[1])
  end
  if string.byte(v, 1) == 49 then
    redis.call('PUBLISH', ARGV[2], ARGV[3])
  end
  return 1
end
return 0
