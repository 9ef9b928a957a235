-- ARGV[5..]: type, params, poll_timeout_s, retention_s, max_runtime_s, tenant_max_active,
--   max_attempts, watch (0|1: the caller will wait for the job: create its events stream),
--   request_id (the submitting request's X-Request-ID, kept as 'rid' for the worker's logs; may be '')
-- Returns {'created', <what read_job returns after 'ok'>} | {'exists'} | {'conflict'} |
--   {'tombstoned'} | {'too_many', active}.
local job_type, params = ARGV[5], ARGV[6]
local poll_timeout = tonumber(ARGV[7])
local now = now_ms()

local status = settle(now)
if status and status ~= 'gone' then
  local old = redis.call('HMGET', K_RECORD, 'type', 'params')
  if old[1] == job_type and old[2] == params then
    if ARGV[12] == '1' and not is_terminal(status) then
      ensure_stream(status, redis.call('HGET', K_RECORD, 'progress') or '0')
    end
    return {'exists'}
  end
  return {'conflict'}
end
if redis.call('EXISTS', K_TOMB) == 1 then
  return {'tombstoned'}
end
local active = count_active(now)
if active >= tonumber(ARGV[10]) then
  return {'too_many', active}
end

redis.call('HSET', K_RECORD, 'type', job_type, 'params', params,
  'status', 'INITIALIZED', 'progress', 0, 'message', 'Queued', 'created', now, 'sent', now,
  'poll_timeout', poll_timeout, 'retention', ARGV[8], 'max_runtime', ARGV[9], 'attempt', 0,
  'max_attempts', ARGV[11], 'msgs', 1)
if ARGV[13] and ARGV[13] ~= '' then
  redis.call('HSET', K_RECORD, 'rid', ARGV[13])
end
if poll_timeout > 0 then
  redis.call('SET', K_HB, '1', 'PX', poll_timeout * 1000)
  redis.call('HSET', K_RECORD, 'deadline', now + poll_timeout * 1000)
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
if ARGV[12] == '1' then
  last_id = ensure_stream('INITIALIZED', '0')
end
-- What a read would answer, so that a submit needs no second round trip.
return {'created', redis.call('HGETALL', K_RECORD), false, last_id, tostring(now),
  redis.call('ZRANK', K_QUEUE, MEMBER) or false}
