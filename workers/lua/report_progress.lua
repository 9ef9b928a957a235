-- Progress, message and partial rows of a running job in one round trip; the
-- answer tells the worker whether to go on. With nothing to write it is the
-- watchdog's check.
-- ARGS: percent (-1 = unchanged), message ('' = unchanged), rows (ndjson, '' = none),
--   chunk (the index of the partial chunk the rows go to; 0 = K_PARTIAL)
-- The call renews the caller's lease; a caller whose lease another execution
-- has taken over gets 'LEASE_LOST' and writes nothing.
-- Returns {status_or_'missing'|'gone'|'LEASE_LOST', progress, hooked (0|1: a
--   'progress' webhook delivery was queued)}.
local percent = tonumber(ARGS[1])
local message, rows = ARGS[2], ARGS[3]
local now = now_ms()
local refused = refuse_unless_owned_running(now)
if refused then
  return refused
end
if TOKEN ~= '' then
  redis.call('PEXPIRE', K_LEASE, hget_num('lease_ms'))
end
local progress = hget_num('progress')
local changed, advanced = false, false
if percent >= 0 then
  local capped = math.min(PROGRESS_RUNNING_MAX, math.floor(percent))
  if capped > progress then
    progress = capped
    redis.call('HSET', K_RECORD, 'progress', progress)
    changed, advanced = true, true
  end
end
if message ~= '' then
  redis.call('HSET', K_RECORD, 'message', message)
  changed = true
end
if rows ~= '' then
  local index = tonumber(ARGS[4]) or 0
  local key = partial_chunk(index)
  if index > 0 and hget_num('pchunks') < index + 1 then
    redis.call('HSET', K_RECORD, 'pchunks', index + 1)
    compact(partial_chunk(index - 1))
  end
  redis.call('APPEND', key, rows)
  redis.call('PEXPIRE', key, redis.call('PTTL', K_RECORD))
end
if changed then
  notify(STATUS_RUNNING, progress)
  if hget_num('poll_timeout') == 0 then
    renew_live_ttl()
  end
end
if advanced then
  add_hook(EVENT_PROGRESS, STATUS_RUNNING, progress, redis.call('HGET', K_RECORD, 'message'), nil)
end
return {STATUS_RUNNING, progress, HOOKED}
