-- Acquire a lease if the name is free.
-- KEYS[1] lease hash, KEYS[2] fencing counter (same hash slot)
-- ARGV[1] lease id, ARGV[2] ttl ms, ARGV[3] token floor ("0" outside Redlock),
-- ARGV[4] owner, ARGV[5..] metadata field/value pairs (fields already prefixed "meta_")
-- Returns nil when held, else {fencing token, acquired-at ms (server clock)}.
-- Server calls: EXISTS, TIME, INCR, HSET (every field at once), PEXPIRE; plus a SET of the
-- counter only when it is seeded or raised to the floor.
if redis.call('EXISTS', KEYS[1]) == 1 then
  -- Someone is about to wait for this name: its release must be announced.
  redis.call('HSET', KEYS[1], 'waited', '1')
  return false
end
local t = redis.call('TIME')
local token = redis.call('INCR', KEYS[2])
local counted = token
local floor = tonumber(ARGV[3])
if token == 1 then
  -- The counter was absent (first use, or a restart without persistence): seed it from
  -- the server clock in microseconds so tokens keep increasing across restarts.
  token = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
if token <= floor then
  token = floor + 1
end
-- Every number stored is formatted with '%d' (a C long: exact below 2^53; tokens are
-- ~1.7e15). Passing a Lua number to redis.call is not safe: Redis 7.2.0-7.2.4
-- (redis/redis#13113) writes whole numbers that are multiples of 1e8 in scientific
-- notation ("1.7000001e+15"), which would corrupt the counter and the lease's fields.
local token_s = string.format('%d', token)
if token ~= counted then
  redis.call('SET', KEYS[2], token_s)
end
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'leaseId', ARGV[1], 'fencingToken', token_s,
  'owner', ARGV[4], 'acquiredAt', string.format('%d', now_ms), unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {token, now_ms}
