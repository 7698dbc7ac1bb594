-- Operator force-release, always announced.
-- KEYS[1] lease; ARGV[1] the name's notification channel, ARGV[2] lease name
-- Returns 1 when a lease was deleted, 0 when the name was free.
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
  return 1
end
return 0
