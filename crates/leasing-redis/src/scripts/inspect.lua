-- The current holder with its remaining TTL on the server's clock.
-- KEYS[1] lease
-- Returns nil when free, else {value, pttl ms, server now ms}.
local v = redis.call('GET', KEYS[1])
if not v then
  return false
end
local t = redis.call('TIME')
return {v, redis.call('PTTL', KEYS[1]), tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
