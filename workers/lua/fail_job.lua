-- Anyone (the API on cancel, the worker's watchdog on a time limit) fails a job
-- that is not terminal yet. ARGV[4..]: code, message, retryable (0|1)
-- Returns {status_after}: 'FAILED' when this call failed it, else the status it had.
local now = now_ms()
local status = settle(now)
if status == nil or status == 'gone' or is_terminal(status) then
  return {status or 'missing', 0}
end
local err = error_json(ARGV[4], ARGV[5], ARGV[6] == '1')
return {finish(now, 'FAILED', ARGV[5], err, now), 1}
