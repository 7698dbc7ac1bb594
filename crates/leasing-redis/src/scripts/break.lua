-- Operator force-release, always announced: the lease becomes a tombstone with its
-- token, as at a release.
-- KEYS[1] lease; ARGV[1] the name's notification channel, ARGV[2] lease name,
-- ARGV[3] how long the tombstone lives (ms)
-- Returns 1 when a lease was ended, 0 when the name was free.
local v = redis.call('GET', KEYS[1])
if not v or string.byte(v, 1) == 126 then
  return 0
end
-- <waited><lease id>|<token>|…: lease ids have no '|'.
local s = string.find(v, '|', 2, true)
local e = s and string.find(v, '|', s + 1, true)
local token = e and string.sub(v, s + 1, e - 1)
local r = token and tonumber(token) and redis.pcall('SET', KEYS[1], '~' .. token, 'PX', ARGV[3])
if type(r) ~= 'table' or r.ok == nil then
  -- A record that is not ours, or a full server: delete (the clock floors the next token).
  redis.call('DEL', KEYS[1])
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
