-- A worker takes a queued job: it becomes RUNNING under a lease (token, TTL)
-- that the worker renews; a second delivery while the lease lives does nothing.
-- ARGS: worker name, lease_ms
-- Returns {'missing'} | {'gone'} | {'skip', status} |
--   {'run', type, params, attempt, request_id ('' when the record has none)}.
-- A first execution also observes the job's queue wait (created → started).
local worker, lease_ms = ARGS[1], tonumber(ARGS[2])
local now = now_ms()
local status = settle(now)
if status == nil then
  unqueue()
  return {ABSENT_MISSING}
end
if status == ABSENT_GONE then
  return {ABSENT_GONE}
end
if status ~= STATUS_INITIALIZED then
  return {TAG_SKIP, status}
end
-- Whatever happens next, this job no longer waits in the queue.
unqueue()
redis.call('ZREM', K_REQUEUE, MEMBER)
-- A message started it: no longer suspected lost (see lost_message.lua).
redis.call('HDEL', K_RECORD, 'absent', 'resend')
local attempt = redis.call('HINCRBY', K_RECORD, 'attempt', 1)
-- A new execution starts its rows afresh: what an earlier one published or
-- wrote of its result is dropped.
if attempt > 1 then
  del_partial()
  del_result()
end
redis.call('HSET', K_RECORD, 'status', STATUS_RUNNING, 'started', now, 'message', 'Running',
  'lease', TOKEN, 'lease_ms', lease_ms, 'run:' .. attempt, now, 'run:' .. attempt .. ':w', worker)
redis.call('SET', K_LEASE, TOKEN, 'PX', lease_ms)
if hget_num('poll_timeout') == 0 then
  renew_live_ttl()
end
schedule_due()
notify(STATUS_RUNNING)
local fields = redis.call('HMGET', K_RECORD, 'type', 'params', 'rid', 'created')
if attempt == 1 and fields[4] then
  observe(K_QUEUE_WAIT, fields[1], (now - tonumber(fields[4])) / 1000)
end
return {TAG_RUN, fields[1], fields[2], attempt, fields[3] or ''}
