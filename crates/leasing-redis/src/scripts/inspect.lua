-- The current holder with its remaining TTL on the server's clock.
-- KEYS[1] lease hash
-- Returns nil when free, else {flat HGETALL, pttl ms, server now ms}.
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then
  return false
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {h, redis.call('PTTL', KEYS[1]), now_ms}
