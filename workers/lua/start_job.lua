-- A worker takes a queued job.
-- Returns {'missing'} | {'gone'} | {'skip', status} | {'run', type, params, attempt}.
local now = now_ms()
unqueue()  -- whatever happens next, this job no longer waits in the queue
local status = settle(now)
if status == nil then
  return {'missing'}
end
if status == 'gone' then
  return {'gone'}
end
if status ~= 'INITIALIZED' then
  return {'skip', status}
end
local attempt = redis.call('HINCRBY', K_RECORD, 'attempt', 1)
redis.call('HSET', K_RECORD, 'status', 'RUNNING', 'started', now, 'message', 'Running')
if hget_num('poll_timeout') == 0 then
  renew_live_ttl()
end
notify('RUNNING', redis.call('HGET', K_RECORD, 'progress'))
local fields = redis.call('HMGET', K_RECORD, 'type', 'params')
return {'run', fields[1], fields[2], attempt}
