-- A worker that is shutting down gives its running job back to the queue: the
-- execution ends ('handed_back'), the job is INITIALIZED again and the sweep
-- sends its message to another worker. Only the lease holder may.
-- Returns {status_after, applied (0|1)}.
local now = now_ms()
local status = settle(now)
if status ~= 'RUNNING' then
  return {status or 'missing', 0}
end
if TOKEN == '' or not owned() then
  return {'LEASE_LOST', 0}
end
return {requeue(now, 'handed_back', 'Requeued: its worker shut down'), 1}
