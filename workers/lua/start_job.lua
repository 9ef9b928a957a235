-- A worker takes a queued job: it becomes RUNNING under a lease (token, TTL)
-- that the worker renews; a second delivery while the lease lives does nothing.
-- ARGV[5..]: worker name, lease_ms
-- Returns {'missing'} | {'gone'} | {'skip', status} |
--   {'run', type, params, attempt, request_id ('' when the record has none)}.
local worker, lease_ms = ARGV[5], tonumber(ARGV[6])
local now = now_ms()
local status = settle(now)
if status == nil then
  unqueue()
  return {'missing'}
end
if status == 'gone' then
  return {'gone'}
end
if status ~= 'INITIALIZED' then
  return {'skip', status}
end
-- Whatever happens next, this job no longer waits in the queue.
unqueue()
redis.call('ZREM', K_REQUEUE, MEMBER)
-- A message started it: no longer suspected lost (see lost_message.lua).
redis.call('HDEL', K_RECORD, 'absent', 'resend')
local attempt = redis.call('HINCRBY', K_RECORD, 'attempt', 1)
redis.call('HSET', K_RECORD, 'status', 'RUNNING', 'started', now, 'message', 'Running',
  'lease', TOKEN, 'lease_ms', lease_ms, 'run:' .. attempt, now, 'run:' .. attempt .. ':w', worker)
redis.call('SET', K_LEASE, TOKEN, 'PX', lease_ms)
if hget_num('poll_timeout') == 0 then
  renew_live_ttl()
end
schedule_due()
notify('RUNNING', redis.call('HGET', K_RECORD, 'progress'))
local fields = redis.call('HMGET', K_RECORD, 'type', 'params', 'rid')
return {'run', fields[1], fields[2], attempt, fields[3] or ''}
