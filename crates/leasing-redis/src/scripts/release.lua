-- Release a lease held under a lease id and announce it.
-- KEYS[1] lease hash; ARGV[1] lease id, ARGV[2] notification channel, ARGV[3] lease name
-- Returns 1 when released, 0 when it was not held under this id (left alone).
if redis.call('HGET', KEYS[1], 'leaseId') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
