-- A worker that is shutting down gives its running job back to the queue: the
-- execution ends ('handed_back'), the job is INITIALIZED again and the sweep
-- sends its message to another worker. Only the lease holder may.
-- ARGS[1]: how many hand-backs of the job spend no attempt (JOBGATE_MAX_HAND_BACKS);
-- past them a hand-back counts as an attempt, so a loop still ends.
-- Returns {status_after, applied (0|1)}.
local max_hand_backs = tonumber(ARGS[1])
local now = now_ms()
local refused = refuse_unless_owned_running(now)
if refused then
  return refused
end
if TOKEN == '' then
  return {TAG_LEASE_LOST, 0}
end
if hget_num('handed_back') < max_hand_backs then
  redis.call('HINCRBY', K_RECORD, 'handed_back', 1)
end
return {requeue(now, RUN_HANDED_BACK, 'Requeued: its worker shut down'), 1}
