-- The sweep's look at one job from jobgate:due: settle it (a lapsed poll
-- heartbeat times it out, a lapsed lease requeues or fails it) and schedule
-- the next look. Safe to run any number of times, from any number of sweeps.
-- Returns {status_or_'missing'|'gone'}.
local now = now_ms()
local status = settle(now)
if status == nil or status == 'gone' or is_terminal(status) then
  redis.call('ZREM', K_DUE, MEMBER)
  return {status or 'missing'}
end
schedule_due()
return {status}
