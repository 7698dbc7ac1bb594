-- Redlock second phase: raise the fencing counter to the token chosen over the majority
-- and record it in the lease, if still held under this lease id.
-- KEYS[1] lease hash, KEYS[2] fencing counter; ARGV[1] lease id, ARGV[2] token
-- Returns 1 when written, 0 when the lease is no longer held under this id.
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if cur < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
end
if redis.call('HGET', KEYS[1], 'leaseId') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'fencingToken', ARGV[2])
  return 1
end
return 0
