-- The sweep looked for the job's current message in the broker (by its id,
-- workers/broker.py) and found it nowhere, or delivered long ago to a worker
-- that never started it. A message is between two places for a moment (popped,
-- not yet in kombu's unacked hash; taken out of it, not yet restored), so one
-- look only makes it suspect: it is lost when a second look, at least
-- LOST_CONFIRM_MS later, finds the same message still missing and the job still
-- waiting for it. Then the job is queued for a resend, up to
-- MAX_LOST_RESENDS times; past that it ends FAILED/WORKER_LOST (retryable): a broker that keeps
-- losing its messages would otherwise make it wait forever.
-- ARGS: the message's sequence number (the record's msgs).
-- Returns {'skip'} (the job moved on) | {'suspect'} | {'requeued'} | {'failed'}.
local seq = ARGS[1]
local now = now_ms()
local status = settle(now)
if status ~= STATUS_INITIALIZED or (redis.call('HGET', K_RECORD, 'msgs') or '1') ~= seq
    or redis.call('ZSCORE', K_REQUEUE, MEMBER) then
  return {LOST_SKIP}
end
local absent = hget_num('absent')
if absent == 0 or now < absent then
  redis.call('HSET', K_RECORD, 'absent', now)
  return {LOST_SUSPECT}
end
if now - absent < LOST_CONFIRM_MS then
  return {LOST_SUSPECT}
end
redis.call('HDEL', K_RECORD, 'absent')
local lost = redis.call('HINCRBY', K_RECORD, 'lost', 1)
if lost <= MAX_LOST_RESENDS then
  redis.call('HSET', K_RECORD, 'resend', RESEND_LOST)
  redis.call('ZADD', K_REQUEUE, now, MEMBER)
  redis.call('PEXPIRE', K_REQUEUE, INDEX_TTL_MS)
  return {LOST_REQUEUED}
end
local message = string.format(
  'Message lost: the broker lost this job\'s message %d times; it was not sent again', lost)
finish(now, STATUS_FAILED, message, error_json(CODE_WORKER_LOST, message), now)
return {LOST_FAILED}
