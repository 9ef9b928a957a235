-- Anyone (the API on cancel, the worker's watchdog on a time limit) fails a job
-- that is not terminal yet. ARGV[5..]: code, message, retryable (0|1)
-- A worker (ARGV[4] its token) fails only the execution it owns.
-- Returns {status_after, applied}: 'FAILED' when this call failed it, else the status it had.
local now = now_ms()
local status = settle(now)
if status == nil or status == 'gone' or is_terminal(status) then
  return {status or 'missing', 0}
end
if not owned() then
  return {'LEASE_LOST', 0}
end
local err = error_json(ARGV[5], ARGV[6], ARGV[7] == '1')
return {finish(now, 'FAILED', ARGV[6], err, now), 1}
