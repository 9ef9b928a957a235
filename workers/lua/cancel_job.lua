-- DELETE /v1/jobs/{id}. A live job becomes FAILED/CANCELLED_BY_USER at once
-- (the worker sees it at its next progress write or watchdog check); a
-- terminal job's status and result are deleted, leaving the tombstone (410).
-- Returns {'cancelled', hooked (0|1: a webhook delivery was queued)} | {'deleted'} |
--   {'missing'} | {'gone'}.
local now = now_ms()
local status, absent = settle_or_absent(now)
if absent then
  return {absent}
end
if not is_terminal(status) then
  local message = 'Cancelled by the user'
  local err = error_json(CODE_CANCELLED_BY_USER, message)
  if finish(now, STATUS_FAILED, message, err, now) == ABSENT_GONE then
    return {ABSENT_GONE}
  end
  return {CANCEL_CANCELLED, HOOKED}
end
del_partial()
del_result()
redis.call('DEL', K_RECORD, K_HB)
redis.call('PEXPIRE', K_TOMB, TOMB_TTL_MS)
redis.call('ZREM', K_TENANT, JOB_ID)
redis.call('ZREM', K_LISTED, JOB_ID)
notify(status, 0, 1, true)
return {CANCEL_DELETED}
