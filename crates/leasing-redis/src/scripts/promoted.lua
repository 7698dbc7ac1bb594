-- Restart fence after a promotion: the server time (ms) the first client noticed that
-- this server became a primary under its current replication id.
-- KEYS[1] marker ({prefix}promoted:<replication id>)
-- Returns {noticed-at ms, server now ms}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], string.format('%d', now), 'NX')
return {tonumber(redis.call('GET', KEYS[1])), now}
