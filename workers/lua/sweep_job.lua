-- The sweep's look at one job from jobgate:due: settle it (a lapsed poll
-- heartbeat times it out, a lapsed lease requeues or fails it, a queued job
-- without a heartbeat has its TTLs renewed) and schedule
-- the next look. Safe to run any number of times, from any number of sweeps.
-- Returns {status_or_'missing'|'gone'}.
local now = now_ms()
local status = settle(now)
if CLUSTER then
  reindex(now)
end
if status == nil or status == ABSENT_GONE or is_terminal(status) then
  redis.call('ZREM', K_DUE, MEMBER)
  return {status or ABSENT_MISSING}
end
-- Waiting with its heartbeat off, the job has no clock of its own: its keys
-- are renewed here, so that it is not forgotten however long it waits.
if status == STATUS_INITIALIZED and hget_num('poll_timeout') == 0 then
  renew_live_ttl()
  redis.call('PEXPIRE', K_QUEUE, INDEX_TTL_MS)
end
schedule_due()
return {status}
