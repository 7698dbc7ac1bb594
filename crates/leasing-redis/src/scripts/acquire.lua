-- Acquire a lease if the name is free.
-- KEYS[1] lease; KEYS[2] the fencing counter (Redlock servers only, with ARGV[4] ~= "0").
-- ARGV[1] lease id, ARGV[2] ttl ms, ARGV[3] token floor: "0" (the server clock), or for
-- Redlock's other servers the first server's token minus one,
-- ARGV[4] "0" (no counter), or how long the counter outlives its last grant (ms),
-- ARGV[5] the rest of the value (owner and metadata, encoded by the client)
-- Returns nil when held, else {fencing token, acquired-at ms (server clock)}.
-- Server calls: GET, TIME, SET PX (held: GET, and SETRANGE the first time); a Redlock
-- server also SET GET of its counter.
--
-- The lease key holds either a lease, <waited flag '0'|'1'><lease id>|<token>|<acquired
-- ms>|<rest>, or, once released, a tombstone: '~' followed by the last token, kept for
-- the retention. The token is max(last + 1, server clock in µs) (floor 0), or
-- max(last + 1, floor + 1): it never goes back while the tombstone lives, and after it is
-- gone (the lease expired, the name was idle, a restart without persistence, a promoted
-- replica that missed it) it still rises with the server clock.
local v = redis.call('GET', KEYS[1])
local last = 0
if v then
  if string.byte(v, 1) ~= 126 then
    -- Held (by a lease of ours, or by a record we cannot read: never taken over).
    -- Someone is about to wait for this name: its release must be announced.
    if string.byte(v, 1) ~= 49 then
      redis.call('SETRANGE', KEYS[1], 0, '1')
    end
    return false
  end
  last = tonumber(string.sub(v, 2))
  if not last then
    return redis.error_reply('ERR lease tombstone is not a token: ' .. string.sub(v, 1, 40))
  end
end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local floor = tonumber(ARGV[3])
local token = now_us
if floor > 0 then
  token = floor + 1
end
if last >= token then
  token = last + 1
end
-- Every number stored is formatted with '%d' (a C long: exact below 2^53; tokens are
-- ~1.8e15). Passing a Lua number to redis.call is not safe: Redis 7.2.0-7.2.4
-- (redis/redis#13113) writes whole numbers that are multiples of 1e8 in scientific
-- notation ("1.7000001e+15"), which would corrupt the counter and the lease.
local token_s = string.format('%d', token)
if ARGV[4] ~= '0' then
  -- Redlock: the counter outlives an expired lease, so that a later majority's token
  -- stays above this one without comparing two servers' clocks. Raised and read in one
  -- call; in the rare case it was ahead, the token goes above it and the counter follows.
  local counter = redis.call('SET', KEYS[2], token_s, 'PX', ARGV[4], 'GET')
  if counter and tonumber(counter) >= token then
    token = tonumber(counter) + 1
    token_s = string.format('%d', token)
    redis.call('SET', KEYS[2], token_s, 'PX', ARGV[4])
  end
end
local now_ms = math.floor(now_us / 1000)
redis.call('SET', KEYS[1],
  '0' .. ARGV[1] .. '|' .. token_s .. '|' .. string.format('%d', now_ms) .. '|' .. ARGV[5],
  'PX', ARGV[2])
return {token, now_ms}
