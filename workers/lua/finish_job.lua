-- The worker ends a running job. A job that is no longer RUNNING (cancelled,
-- timed out) keeps its status and what the worker brings is dropped.
-- ARGS: outcome (DONE|FAILED), payload (result JSON for DONE, error JSON for FAILED),
--   chunks ('' = the payload is the result; CHUNKS_PARTIAL: the result is the
--   partial rows' chunks, kept as the result's; CHUNKS_WRITTEN: its chunks
--   were written by write_chunk: the payload is their manifest either way),
--   truncated ('1': the job cut its result short)
-- A worker whose lease another execution has taken over writes nothing.
-- Returns {status_or_'missing'|'gone'|'LEASE_LOST', applied (0|1)}, and when it
-- applied: hooked (0|1: a webhook delivery was queued), the seconds the job ran
-- (text, or false) and 1 when this call counted them in the duration histogram
-- (observe_end), else 0.
local outcome, payload, chunks, truncated = ARGS[1], ARGS[2], ARGS[3] or '', ARGS[4] or ''
local now = now_ms()
local refused = refuse_unless_owned_running(now)
if refused then
  return refused
end
if outcome == STATUS_DONE then
  local bytes = string.len(payload)
  if chunks == CHUNKS_PARTIAL then
    local n = math.max(1, hget_num('pchunks'))
    compact(partial_chunk(n - 1))
    for i = 0, n - 1 do
      local from = partial_chunk(i)
      if redis.call('EXISTS', from) == 1 then
        bytes = bytes + redis.call('STRLEN', from)
        redis.call('RENAME', from, result_chunk(i))
      end
    end
    redis.call('HSET', K_RECORD, 'result_chunks', n)
    redis.call('HDEL', K_RECORD, 'pchunks')
  elseif chunks == CHUNKS_WRITTEN then
    for i = 0, hget_num('result_chunks') - 1 do
      bytes = bytes + redis.call('STRLEN', result_chunk(i))
    end
  end
  redis.call('SET', K_RESULT, payload)
  redis.call('HSET', K_RECORD, 'result_bytes', bytes)
  if truncated == '1' then
    redis.call('HSET', K_RECORD, 'truncated', '1')
  end
  -- (Its message, 'Done in <seconds> seconds', is read from its times: records.py.)
  local status = finish(now, STATUS_DONE, '', nil, now)
  return {status, 1, HOOKED, observe_end(status, true)}
end
local message = cjson.decode(payload)['message']
local status = finish(now, STATUS_FAILED, message, payload, now)
return {status, 1, HOOKED, observe_end(status, true)}
