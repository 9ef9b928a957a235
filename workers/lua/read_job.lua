-- A read of the job, which is also a poll when ARGS[1] (renew) is '1': it renews the
-- heartbeat atomically with the read.
-- ARGS: renew (0|1), inline_max_bytes (-1 = always), watch (0|1: the
--   caller will wait for a change: make sure the events stream exists)
-- Returns {'missing'} | {'gone'} |
--   {'ok', record, result_or_false, last_event_id, now_ms, queue_position_or_false}.
local renew = ARGS[1] == '1'
local inline_max = tonumber(ARGS[2])
local watch = ARGS[3] == '1'
local now = now_ms()

local status, absent = settle_or_absent(now)
if absent then
  return {absent}
end

local poll_timeout = hget_num('poll_timeout')
if renew and poll_timeout > 0 and not is_terminal(status) then
  set_heartbeat(now, poll_timeout)
  renew_live_ttl()
end

local result = false
-- A result kept in chunks is never inlined: its K_RESULT is the manifest.
if status == STATUS_DONE and (inline_max < 0 or (hget_num('result_bytes') <= inline_max
    and redis.call('HEXISTS', K_RECORD, 'result_chunks') == 0)) then
  result = redis.call('GET', K_RESULT) or false
end
local last_id = '0-0'
if watch and not is_terminal(status) then
  last_id = ensure_stream(status, redis.call('HGET', K_RECORD, 'progress') or '0')
end
local position = false
if status == STATUS_INITIALIZED then
  position = queue_position()
end
return {TAG_OK, redis.call('HGETALL', K_RECORD), result, last_id, tostring(now), position}
