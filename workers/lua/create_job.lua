-- ARGS: type, params, poll_timeout_s, retention_s, max_runtime_s, tenant_max_active,
--   max_attempts, watch (0|1: the caller will wait for the job: create its events stream),
--   request_id (the submitting request's X-Request-ID, kept as 'rid' for the worker's logs; may be ''),
--   queue (its broker queue's name), priority (0-9; K_QUEUE is the index of both)
--   callback_url ('' = none), callback_events (',done,failed,': the events it wants)
-- Returns {'created', <what read_job returns after 'ok'>} | {'exists'} | {'conflict'} |
--   {'tombstoned'} | {'too_many', active}.
local job_type, params = ARGS[1], ARGS[2]
local poll_timeout = tonumber(ARGS[3])
local now = now_ms()

local status = settle(now)
if status and status ~= ABSENT_GONE then
  local old = redis.call('HMGET', K_RECORD, 'type', 'params')
  if old[1] == job_type and old[2] == params then
    if ARGS[8] == '1' and not is_terminal(status) then
      ensure_stream(status, redis.call('HGET', K_RECORD, 'progress') or '0')
    end
    return {CREATE_EXISTS}
  end
  return {CREATE_CONFLICT}
end
if redis.call('EXISTS', K_TOMB) == 1 then
  return {CREATE_TOMBSTONED}
end
local active = count_active(now)
if active >= tonumber(ARGS[6]) then
  return {CREATE_TOO_MANY, active}
end

redis.call('HSET', K_RECORD, 'type', job_type, 'params', params,
  'status', STATUS_INITIALIZED, 'progress', 0, 'message', 'Queued', 'created', now, 'sent', now,
  'poll_timeout', poll_timeout, 'retention', ARGS[4], 'max_runtime', ARGS[5], 'attempt', 0,
  'max_attempts', ARGS[7], 'msgs', 1, 'queue', ARGS[10], 'priority', ARGS[11])
QUEUE_NAME, PRIORITY = ARGS[10], tonumber(ARGS[11])
if ARGS[9] and ARGS[9] ~= '' then
  redis.call('HSET', K_RECORD, 'rid', ARGS[9])
end
if ARGS[12] and ARGS[12] ~= '' then
  redis.call('HSET', K_RECORD, 'cb', ARGS[12], 'cbe', ARGS[13], 'cbs', CALLBACK_PENDING, 'cba', 0)
end
if poll_timeout > 0 then
  set_heartbeat(now, poll_timeout)
end
redis.call('SET', K_TOMB, '1')
count('submitted')

-- The queue and the tenant's list, in submission order.
local seq = redis.call('INCR', K_SEQ)
redis.call('PEXPIRE', K_SEQ, INDEX_TTL_MS)
local order = now * 1000 + seq % 1000
redis.call('HSET', K_RECORD, 'order', order)
redis.call('ZADD', K_QUEUE, order, MEMBER)
trim_index(K_QUEUE, now)
forget_expired(now)
redis.call('ZADD', K_TENANT, order, JOB_ID)
-- Last: the TTLs of the job's keys and of the listing it has just joined,
-- and when the sweep looks at it (its poll deadline, or its TTL's renewal).
renew_live_ttl()
schedule_due()
local last_id = '0-0'
if ARGS[8] == '1' then
  last_id = ensure_stream(STATUS_INITIALIZED, '0')
end
-- What a read would answer, so that a submit needs no second round trip.
return {CREATE_CREATED, redis.call('HGETALL', K_RECORD), false, last_id, tostring(now),
  queue_position()}
