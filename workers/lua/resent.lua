-- The sweep has sent the job's message again, as its message number ARGS[1]
-- (header <tenant>:<id>:<n>, workers/broker.py): off the requeue list, and, if the record still
-- exists (a write to a gone record would leave a key without a TTL), the new
-- message's number and send time, and the resend counted by its reason
-- ('requeued': after a lost worker or a hand-back; 'lost': its message was lost).
-- Returns {1} when the record was updated, else {0}.
local seq = tonumber(ARGS[1])
redis.call('ZREM', K_REQUEUE, MEMBER)
if redis.call('EXISTS', K_RECORD) == 0 then
  return {0}
end
local reason = redis.call('HGET', K_RECORD, 'resend') or RESEND_REQUEUED
redis.call('HSET', K_RECORD, 'sent', now_ms(), 'msgs', math.max(seq, hget_num('msgs')))
redis.call('HDEL', K_RECORD, 'absent', 'resend')
count('resent:' .. reason)
return {1}
