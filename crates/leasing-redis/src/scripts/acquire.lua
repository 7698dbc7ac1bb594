-- Acquire a lease if the name is free.
-- KEYS[1] lease, KEYS[2] fencing counter (same hash slot)
-- ARGV[1] lease id, ARGV[2] ttl ms, ARGV[3] token floor: "0" (the server clock), or for
-- Redlock's other servers the first server's token minus one,
-- ARGV[4] how long the counter outlives its last grant (ms),
-- ARGV[5] the rest of the value (owner and metadata, encoded by the client)
-- Returns nil when held, else {fencing token, acquired-at ms (server clock)}.
-- Server calls: TIME, SET GET (the counter), SET NX PX (held: and SETRANGE).
--
-- The lease is one string: <waited flag '0'|'1'><lease id>|<token>|<acquired ms>|<rest>.
-- The token is max(counter + 1, server clock in µs) (floor 0), or max(counter + 1,
-- floor + 1): it never goes back while the counter lives, and after the counter is gone
-- (idle name, restart without persistence, a promoted replica that missed it) it still
-- rises with the server clock.
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local floor = tonumber(ARGV[3])
local token = now_us
if floor > 0 then
  token = floor + 1
end
-- Every number stored is formatted with '%d' (a C long: exact below 2^53; tokens are
-- ~1.7e15). Passing a Lua number to redis.call is not safe: Redis 7.2.0-7.2.4
-- (redis/redis#13113) writes whole numbers that are multiples of 1e8 in scientific
-- notation ("1.7000001e+15"), which would corrupt the counter and the lease.
local token_s = string.format('%d', token)
-- Raise the counter and read its old value in one call; in the rare case it was ahead
-- (the server clock stepped back), the token goes above it and the counter follows.
local counter = redis.call('SET', KEYS[2], token_s, 'PX', ARGV[4], 'GET')
if counter and tonumber(counter) >= token then
  token = tonumber(counter) + 1
  token_s = string.format('%d', token)
  redis.call('SET', KEYS[2], token_s, 'PX', ARGV[4])
end
local now_ms = math.floor(now_us / 1000)
-- (A counter raised for a name that turns out held is harmless: it only has to stay at
-- or above every token granted.)
if not redis.call('SET', KEYS[1],
    '0' .. ARGV[1] .. '|' .. token_s .. '|' .. string.format('%d', now_ms) .. '|' .. ARGV[5],
    'NX', 'PX', ARGV[2]) then
  -- Someone is about to wait for this name: its release must be announced.
  redis.call('SETRANGE', KEYS[1], 0, '1')
  return false
end
return {token, now_ms}
