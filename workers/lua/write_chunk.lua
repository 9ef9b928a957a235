-- A worker writes one chunk of a large result before it ends the job
-- (finish_job with CHUNKS_WRITTEN then keeps them): the chunk lives as long as
-- the record, and the record counts the chunks so that any end deletes them.
-- ARGS: index (0-based), data
-- A worker whose lease another execution has taken over writes nothing.
-- Returns {status_or_'missing'|'gone'|'LEASE_LOST', applied (0|1)}.
local index, data = tonumber(ARGS[1]), ARGS[2]
local now = now_ms()
local refused = refuse_unless_owned_running(now)
if refused then
  return refused
end
redis.call('SET', result_chunk(index), data, 'PX', math.max(1, redis.call('PTTL', K_RECORD)))
if hget_num('result_chunks') < index + 1 then
  redis.call('HSET', K_RECORD, 'result_chunks', index + 1)
end
return {STATUS_RUNNING, 1}
