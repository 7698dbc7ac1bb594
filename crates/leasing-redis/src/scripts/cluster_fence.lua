-- Restart fence in Redis Cluster mode: prepended to acquire.lua (only when restart_fence
-- is set) so the check runs atomically on the node that grants. A client-side INFO before
-- the acquire would be racy: redis-rs' cluster connection hides which node answers, and
-- after a failover the INFO and the acquire can reach different nodes without an error.
-- KEYS[3] promotion marker of the lease's hash slot ({prefix}{<slot tag>}:promoted: another
--         hash tag, the same slot as the lease, so the cluster accepts it; one per slot)
-- ARGV[6] restart fence (ms), ARGV[7] the marker's TTL (ms)
-- Returns {0, fenced-until ms, server now ms} when fenced; otherwise acquire.lua runs.
-- Server calls: INFO server, INFO replication, TIME; on a promoted node also GET and SET
-- (first notice) or PEXPIRE (TTL refresh) of the marker.
--
-- The node grants nothing while (1) its uptime is below the fence (a restart, possibly
-- without persistence) or (2) it was promoted from a replica (second_repl_offset ~= -1)
-- less than the fence before a name of this hash slot was first acquired there since the
-- promotion: the slot's marker records that moment (server clock) under the node's
-- replication id, which is new at every promotion, so a marker replicated from an earlier
-- master never counts. Every acquire in the slot refreshes the marker's TTL; a marker that
-- expired (no acquire in the slot for the TTL) is written anew: the slot is fenced once
-- more, which only delays, never shortens a fence.
do
  -- Two calls, not 'INFO server replication' (one section per call before Redis 7).
  local info = '\n' .. redis.call('INFO', 'server') .. '\n' .. redis.call('INFO', 'replication')
  local function field(name)
    -- Anchored at a line start, up to the line end (CRLF, or a bare LF). Plain finds, not
    -- string.match: a pattern scan of the ~1 KB text costs ~5 µs per field.
    local key = '\n' .. name .. ':'
    local s = string.find(info, key, 1, true)
    if not s then
      return nil
    end
    s = s + #key
    local e = (string.find(info, '\n', s, true) or #info + 1) - 1
    if string.byte(info, e) == 13 then
      e = e - 1
    end
    return string.sub(info, s, e)
  end
  local up = tonumber(field('uptime_in_seconds') or '')
  local offset = field('second_repl_offset')
  local replid = field('master_replid')
  if not up or not offset or not replid then
    -- Fail closed: without these the fence cannot be decided.
    return redis.error_reply('ERR restart fence: INFO lacks uptime_in_seconds, second_repl_offset or master_replid')
  end
  local fence_ms = tonumber(ARGV[6])
  local ft = redis.call('TIME')
  local fnow = tonumber(ft[1]) * 1000 + math.floor(tonumber(ft[2]) / 1000)
  -- uptime_in_seconds is rounded down: the start estimate is never early.
  local fenced_until = fnow - up * 1000 + fence_ms
  if offset ~= '-1' then
    local at
    local mark = redis.call('GET', KEYS[3])
    if mark then
      local sep = string.find(mark, '|', 1, true)
      if sep and string.sub(mark, 1, sep - 1) == replid then
        at = tonumber(string.sub(mark, sep + 1))
      end
    end
    if at then
      redis.call('PEXPIRE', KEYS[3], ARGV[7])
    else
      at = fnow
      redis.call('SET', KEYS[3], replid .. '|' .. string.format('%d', fnow), 'PX', ARGV[7])
    end
    if at + fence_ms > fenced_until then
      fenced_until = at + fence_ms
    end
  end
  if fnow < fenced_until then
    return {0, fenced_until, fnow}
  end
end
