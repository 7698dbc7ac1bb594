-- Release a lease held under a lease id; announce it only when someone found it held.
-- KEYS[1] lease; ARGV[1] lease id followed by '|', ARGV[2] the name's notification
-- channel, ARGV[3] lease name
-- Returns 1 when released, 0 when it was not held under this id (left alone).
-- Server calls: GET, DEL, and PUBLISH only if a contender marked the lease waited.
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 2, #ARGV[1] + 1) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if string.byte(v, 1) == 49 then
    redis.call('PUBLISH', ARGV[2], ARGV[3])
  end
  return 1
end
return 0
