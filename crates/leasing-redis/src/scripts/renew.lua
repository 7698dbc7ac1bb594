-- Extend a lease held under a lease id.
-- KEYS[1] lease hash; ARGV[1] lease id, ARGV[2] ttl ms
-- Returns 1 when renewed, 0 when the lease is gone or held under another id.
if redis.call('HGET', KEYS[1], 'leaseId') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
