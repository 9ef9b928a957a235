-- One observation of a job histogram (workers/job_metrics.py): one HINCRBY of
-- the one bucket ``value`` (seconds) falls in, field '<labels>|<bound>' with
-- the bound as Python writes it (JOB_BUCKETS), and one HINCRBYFLOAT of
-- '<labels>|sum'. The hash lives STATS_TTL_MS after its last observation.
local function observe(hash, labels, value)
  local le = '+Inf'
  for _, bound in ipairs(JOB_BUCKETS) do
    if value <= tonumber(bound) then
      le = bound
      break
    end
  end
  redis.call('HINCRBY', hash, labels .. '|' .. le, 1)
  redis.call('HINCRBYFLOAT', hash, labels .. '|sum', value)
  redis.call('PEXPIRE', hash, STATS_TTL_MS)
end

-- The job's record ended (DONE or FAILED) and it had started: its duration
-- (started → finished, by type and final status) is observed once, whoever
-- sees the end first. Only the worker's finish_job makes a job DONE, and it
-- counts it (``by_finish``); a FAILED job keeps 'observed' once counted.
-- Returns the seconds it ran (text), or false, and 1 when this call counted
-- it, else 0.
local function observe_end(status, by_finish)
  local f = redis.call('HMGET', K_RECORD, 'type', 'started', 'finished', 'observed')
  if not (TERMINAL[status] and f[2] and f[3]) then
    return false, 0
  end
  local seconds = (tonumber(f[3]) - tonumber(f[2])) / 1000
  if f[4] or (status == STATUS_DONE and not by_finish) then
    return tostring(seconds), 0
  end
  if status ~= STATUS_DONE then
    redis.call('HSET', K_RECORD, 'observed', 1)
  end
  observe(K_DURATION, f[1] .. '|' .. status, seconds)
  return tostring(seconds), 1
end
