-- The worker ends a running job. A job that is no longer RUNNING (cancelled,
-- timed out) keeps its status and what the worker brings is dropped.
-- ARGS: outcome (DONE|FAILED), payload (result JSON for DONE, error JSON for FAILED)
-- A worker whose lease another execution has taken over writes nothing.
-- Returns {status_or_'missing'|'gone'|'LEASE_LOST', applied (0|1), hooked (0|1: a
--   webhook delivery was queued)}.
local outcome, payload = ARGS[1], ARGS[2]
local now = now_ms()
local refused = refuse_unless_owned_running(now)
if refused then
  return refused
end
if outcome == STATUS_DONE then
  local seconds = (now - hget_num('started')) / 1000
  redis.call('SET', K_RESULT, payload)
  redis.call('HSET', K_RECORD, 'result_bytes', string.len(payload))
  local status = finish(now, STATUS_DONE, string.format('Done in %.3f seconds', seconds), nil, now)
  return {status, 1, HOOKED}
end
local message = cjson.decode(payload)['message']
local status = finish(now, STATUS_FAILED, message, payload, now)
return {status, 1, HOOKED}
