-- Anyone (the API on cancel, the worker's watchdog on a time limit) fails a job
-- that is not terminal yet. ARGS: code, message
-- (retryable or not as the code is: RETRYABLE)
-- A worker (TOKEN its lease token) fails only the execution it owns.
-- Returns {status_after, applied, hooked}: FAILED when this call failed it, else the
-- status it had; hooked 1 when a webhook delivery was queued.
local now = now_ms()
local status = settle(now)
if status == nil or status == ABSENT_GONE or is_terminal(status) then
  return {status or ABSENT_MISSING, 0}
end
if not owned() then
  return {TAG_LEASE_LOST, 0}
end
local err = error_json(ARGS[1], ARGS[2])
local failed = finish(now, STATUS_FAILED, ARGS[2], err, now)
return {failed, 1, HOOKED}
