-- Extend a lease held under a lease id.
-- KEYS[1] lease; ARGV[1] lease id followed by '|', ARGV[2] ttl ms
-- Returns 1 when renewed, 0 when the lease is gone or held under another id.
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 2, #ARGV[1] + 1) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
