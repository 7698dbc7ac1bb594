-- A fenced write: KEYS[1] the item (a hash: field "v" the value, field "t:<lease name>"
-- the largest token accepted for that lease); ARGV[1] "t:<lease name>", ARGV[2] the
-- writer's token (decimal, no leading zeros), ARGV[3] the value.
-- Returns {1, token} when written, {0, highest} when the token is stale.
-- Tokens are compared as decimal strings (length, then text): Lua numbers are doubles
-- and lose precision above 2^53.
local highest = redis.call('HGET', KEYS[1], ARGV[1])
local token = ARGV[2]
if highest and (#highest > #token or (#highest == #token and highest > token)) then
  return {0, highest}
end
redis.call('HSET', KEYS[1], ARGV[1], token, 'v', ARGV[3])
return {1, token}
