-- Redlock second phase: raise the fencing counter to the token chosen over the majority
-- and record it in the lease, if still held under this lease id.
-- KEYS[1] lease, KEYS[2] fencing counter; ARGV[1] lease id followed by '|', ARGV[2] token,
-- ARGV[3] how long the counter outlives its last grant (ms)
-- Returns 1 when written, 0 when the lease is no longer held under this id.
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if cur < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
local v = redis.call('GET', KEYS[1])
local n = #ARGV[1]
if v and string.sub(v, 2, n + 1) == ARGV[1] then
  local rest = string.find(v, '|', n + 2, true)
  redis.call('SET', KEYS[1], string.sub(v, 1, n + 1) .. ARGV[2] .. string.sub(v, rest), 'KEEPTTL')
  return 1
end
return 0
