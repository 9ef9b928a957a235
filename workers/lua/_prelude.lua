-- The Lua functions every Jobgate script shares. The generated prelude
-- (workers/store/scripts.py) comes first: the statuses (STATUS_*), TERMINAL,
-- the error codes (CODE_*) and RETRYABLE (workers/states.py), the windows and
-- limits (workers/limits.py), the KEYS (K_RECORD, ...), the common ARGV
-- (ERROR_ID, TOMB_TTL_MS, INDEX_TTL_MS, TOKEN) and ARGS, the script's own
-- arguments.

-- 'tenant:id' (the queue's member) and 'id' (the tenant index's member).
local MEMBER = string.match(K_RECORD, '{(.*)}$')
local JOB_ID = string.match(MEMBER, '^[^:]*:(.*)$')

-- Redis's clock in ms (workers/store/values.py redis_ms reads TIME the same way).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function hget_num(field)
  return tonumber(redis.call('HGET', K_RECORD, field) or '0')
end

local function is_terminal(status)
  return TERMINAL[status] == true
end

-- Wake every waiter blocked on the job's stream. The stream exists only while
-- someone waits (ensure_stream): a job nobody waits for costs no stream and
-- no write here. It never outlives the job: ``life_ms`` caps its TTL (blocked
-- readers are served when the script ends, so even 1 ms wakes them).
local function notify(status, progress, life_ms)
  if redis.call('EXISTS', K_EVENTS) == 0 then
    return
  end
  life_ms = life_ms or redis.call('PTTL', K_RECORD)
  redis.call('XADD', K_EVENTS, 'MAXLEN', '1', '*', 's', status, 'p', progress)
  redis.call('PEXPIRE', K_EVENTS, math.max(1, math.min(EVENTS_TTL_MS, life_ms)))
end

-- A waiter is about to block: make sure the stream exists (created with the
-- current state as its one entry) and return its last id to wait after.
local function ensure_stream(status, progress)
  local last = redis.call('XREVRANGE', K_EVENTS, '+', '-', 'COUNT', 1)
  if last[1] then
    redis.call('PEXPIRE', K_EVENTS, math.max(1, math.min(EVENTS_TTL_MS, redis.call('PTTL', K_RECORD))))
    return last[1][1]
  end
  local id = redis.call('XADD', K_EVENTS, 'MAXLEN', '1', '*', 's', status, 'p', progress)
  redis.call('PEXPIRE', K_EVENTS, math.max(1, math.min(EVENTS_TTL_MS, redis.call('PTTL', K_RECORD))))
  return id
end

-- An error of ``code``; whether it is retryable is the code's (RETRYABLE).
local function error_json(code, message)
  return cjson.encode({id = ERROR_ID, code = code, message = message,
    retryable = RETRYABLE[code] == true})
end

-- A poll: the job's heartbeat lives ``poll_timeout`` seconds from ``now``,
-- and the record keeps the deadline it sets.
local function set_heartbeat(now, poll_timeout)
  redis.call('SET', K_HB, '1', 'PX', poll_timeout * 1000)
  redis.call('HSET', K_RECORD, 'deadline', now + poll_timeout * 1000)
end

-- The tenant's live jobs, scored by when each stops being live unless renewed:
-- its poll deadline, or (no heartbeat) the end of its live window. An entry
-- past its score has timed out, read or not, so it no longer counts.
local function mark_active(until_ms)
  redis.call('ZADD', K_ACTIVE, until_ms, JOB_ID)
  redis.call('PEXPIRE', K_ACTIVE, INDEX_TTL_MS)
end

local function count_active(now)
  redis.call('ZREMRANGEBYSCORE', K_ACTIVE, '-inf', '(' .. now)
  return redis.call('ZCARD', K_ACTIVE)
end

-- The listing keeps a job while any of its keys may exist: K_LISTED scores
-- each job by when its last key (the tombstone) expires. Both listing sets
-- expire with their longest-lived member, so nothing outlives the last job.
local function keep_listed_until(until_ms)
  redis.call('ZADD', K_LISTED, until_ms, JOB_ID)
  local last = redis.call('ZRANGE', K_LISTED, -1, -1, 'WITHSCORES')
  local expires_at = math.max(until_ms, tonumber(last[2]))
  redis.call('PEXPIREAT', K_LISTED, expires_at)
  redis.call('PEXPIREAT', K_TENANT, expires_at)
end

-- Drop (a bounded number of) listing entries whose jobs have left no key.
local function forget_expired(now)
  local gone = redis.call('ZRANGEBYSCORE', K_LISTED, '-inf', now, 'LIMIT', 0, FORGET_BATCH)
  if #gone > 0 then
    redis.call('ZREM', K_TENANT, unpack(gone))
    redis.call('ZREM', K_LISTED, unpack(gone))
  end
end

-- Give a live job's keys the TTL it needs to outlive its own clocks: the
-- heartbeat (or, with none, the maximum runtime) plus the retention window.
local function renew_live_ttl()
  local clock = hget_num('poll_timeout')
  if clock == 0 then
    clock = hget_num('max_runtime')
  end
  local live_ms = (clock + hget_num('retention')) * 1000
  local deadline = tonumber(redis.call('HGET', K_RECORD, 'deadline') or '0')
  if deadline > 0 then
    mark_active(deadline)
  else
    mark_active(now_ms() + clock * 1000)
  end
  redis.call('PEXPIRE', K_RECORD, live_ms)
  redis.call('PEXPIRE', K_PARTIAL, live_ms)
  redis.call('PEXPIRE', K_TOMB, live_ms + TOMB_TTL_MS)
  keep_listed_until(now_ms() + live_ms + TOMB_TTL_MS)
end

-- Shared indexes carry a TTL renewed on every write and are trimmed by score
-- (created ms * 1000 + a sequence), so they never hold a job that has gone.
local function trim_index(key, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ((now - INDEX_TTL_MS) * 1000))
  redis.call('PEXPIRE', key, INDEX_TTL_MS)
end

-- Counters for /metrics: one hash, so every API process reports the same.
-- Its TTL is renewed on each count; idle for that long, the counters restart
-- (Prometheus counters may reset).
local function count(field)
  redis.call('HINCRBY', K_STATS, field, 1)
  redis.call('PEXPIRE', K_STATS, STATS_TTL_MS)
end

local function unqueue()
  redis.call('ZREM', K_QUEUE, MEMBER)
end

-- When the sweep should next look at the job (its poll deadline, its lease's
-- expiry, whichever is first). A queued job with neither clock (heartbeat off)
-- is looked at halfway through its keys' TTL, to renew it: an accepted job
-- lives until it ends, however long it waits. Any other job leaves the set.
local function schedule_due()
  local next_ms = tonumber(redis.call('HGET', K_RECORD, 'deadline') or '0')
  local lease_ms = redis.call('PTTL', K_LEASE)
  if lease_ms > 0 then
    local lease_at = now_ms() + lease_ms
    if next_ms == 0 or lease_at < next_ms then
      next_ms = lease_at
    end
  end
  if next_ms == 0 and redis.call('HGET', K_RECORD, 'status') == STATUS_INITIALIZED then
    next_ms = now_ms() + math.max(1, redis.call('PTTL', K_RECORD)) / 2
  end
  if next_ms == 0 then
    redis.call('ZREM', K_DUE, MEMBER)
    return
  end
  redis.call('ZADD', K_DUE, next_ms, MEMBER)
  redis.call('PEXPIRE', K_DUE, INDEX_TTL_MS)
end

-- The record keeps every execution, so two that overlapped would show: for
-- attempt n, 'run:n' = '<start ms>' while it runs, '<start> <end> <outcome>'
-- after, and 'run:n:w' = its worker. Short values keep the record hash in
-- Redis's compact encoding (listpack: every value at most RECORD_VALUE_MAX
-- bytes, workers/limits.py).
local function end_run(now, outcome)
  local field = 'run:' .. hget_num('attempt')
  local run = redis.call('HGET', K_RECORD, field)
  if run and not string.find(run, ' ') then
    redis.call('HSET', K_RECORD, field, run .. ' ' .. now .. ' ' .. outcome)
  end
end

-- Put a RUNNING job back in the queue for another execution: its place in the
-- queue index as before, and a mark for the sweep to send its message again.
local function requeue(now, outcome, message)
  end_run(now, outcome)
  redis.call('HDEL', K_RECORD, 'lease')
  redis.call('DEL', K_LEASE)
  redis.call('HSET', K_RECORD, 'status', STATUS_INITIALIZED, 'message', message,
    'resend', RESEND_REQUEUED)
  redis.call('ZADD', K_QUEUE, hget_num('order'), MEMBER)
  redis.call('ZADD', K_REQUEUE, now, MEMBER)
  redis.call('PEXPIRE', K_REQUEUE, INDEX_TTL_MS)
  schedule_due()
  count('requeued:' .. outcome)
  notify(STATUS_INITIALIZED, redis.call('HGET', K_RECORD, 'progress') or '0')
  return STATUS_INITIALIZED
end

-- The terminal transition: status, times, and the retention TTL of every key,
-- in one step. Returns the new status, or 'gone' when retention already lapsed.
local function finish(now, status, message, err, finished_at)
  local expires = finished_at + hget_num('retention') * 1000
  local ttl = expires - now
  if err then
    count('finished:' .. STATUS_FAILED .. ':' .. cjson.decode(err)['code'])
  else
    count('finished:' .. status .. ':')
  end
  unqueue()
  end_run(now, status)
  redis.call('ZREM', K_ACTIVE, JOB_ID)
  redis.call('ZREM', K_DUE, MEMBER)
  redis.call('ZREM', K_REQUEUE, MEMBER)
  redis.call('HDEL', K_RECORD, 'lease')
  redis.call('DEL', K_HB, K_PARTIAL, K_LEASE)
  if ttl <= 0 then
    redis.call('DEL', K_RECORD, K_RESULT)
    redis.call('PEXPIRE', K_TOMB, math.max(1, ttl + TOMB_TTL_MS))
    keep_listed_until(now + math.max(1, ttl + TOMB_TTL_MS))
    notify(status, 0, 1)
    return ABSENT_GONE
  end
  local progress = redis.call('HGET', K_RECORD, 'progress') or '0'
  if status == STATUS_DONE then
    progress = PROGRESS_DONE
    redis.call('PEXPIRE', K_RESULT, ttl)
  else
    redis.call('DEL', K_RESULT)
  end
  redis.call('HSET', K_RECORD, 'status', status, 'message', message,
    'progress', progress, 'finished', finished_at, 'expires', expires)
  if err then
    redis.call('HSET', K_RECORD, 'error', err)
  end
  redis.call('HDEL', K_RECORD, 'deadline')
  redis.call('PEXPIRE', K_RECORD, ttl)
  redis.call('PEXPIRE', K_TOMB, ttl + TOMB_TTL_MS)
  keep_listed_until(now + ttl + TOMB_TTL_MS)
  notify(status, progress, math.min(ttl, FINAL_EVENT_TTL_MS))
  return status
end

-- Apply a transition that is already due (the heartbeat lapsed) and return the
-- job's status: nil when there is no record, 'gone' when it just expired.
local function settle(now)
  local status = redis.call('HGET', K_RECORD, 'status')
  if not status then
    return nil
  end
  if is_terminal(status) then
    return status
  end
  local poll_timeout = hget_num('poll_timeout')
  if poll_timeout > 0 and redis.call('EXISTS', K_HB) == 0 then
    local message = 'Timed out: not polled within ' .. poll_timeout .. ' s'
    local err = error_json(CODE_TIMED_OUT, message)
    return finish(now, STATUS_FAILED, message, err, hget_num('deadline'))
  end
  if status ~= STATUS_RUNNING or redis.call('EXISTS', K_LEASE) == 1 then
    return status
  end
  -- RUNNING without a live lease: its worker stopped renewing it. The worker
  -- that holds the token (it lost Redis for a while, nobody took over) simply
  -- takes its lease back; otherwise the execution is lost.
  local holder = redis.call('HGET', K_RECORD, 'lease')
  if TOKEN ~= '' and TOKEN == holder then
    redis.call('SET', K_LEASE, TOKEN, 'PX', hget_num('lease_ms'))
    return status
  end
  -- Executions handed back at a worker's shutdown (within their own bound,
  -- see hand_back.lua) spend no attempt.
  local attempt = hget_num('attempt') - hget_num('handed_back')
  local max_attempts = math.max(1, hget_num('max_attempts'))
  if attempt < max_attempts then
    return requeue(now, RUN_LOST,
      string.format('Requeued: the worker of attempt %d of %d was lost', attempt, max_attempts))
  end
  local message = string.format(
    'Worker lost: the worker of attempt %d of %d stopped renewing its lease', attempt, max_attempts)
  end_run(now, RUN_LOST)
  return finish(now, STATUS_FAILED, message, error_json(CODE_WORKER_LOST, message), now)
end

-- The calling worker still owns the running job: it holds the lease token.
-- A caller without a token (the API, the sweep) owns nothing.
local function owned()
  return TOKEN == '' or redis.call('HGET', K_RECORD, 'lease') == TOKEN
end

-- settle(), and for a job that is not there, why: 'gone' (its tombstone is
-- left: 410) or 'missing' (never issued, or long forgotten: 404).
local function settle_or_absent(now)
  local status = settle(now)
  if status == ABSENT_GONE then
    return nil, ABSENT_GONE
  end
  if status == nil then
    if redis.call('EXISTS', K_TOMB) == 1 then
      return nil, ABSENT_GONE
    end
    return nil, ABSENT_MISSING
  end
  return status, nil
end

-- A worker's write to its running job: nil when the job runs and the caller
-- owns it, else the reply that refuses the write ({status_or_'missing'|'gone'
-- |'LEASE_LOST', 0}).
local function refuse_unless_owned_running(now)
  local status = settle(now)
  if status ~= STATUS_RUNNING then
    return {status or ABSENT_MISSING, 0}
  end
  if not owned() then
    return {TAG_LEASE_LOST, 0}
  end
  return nil
end

-- Cluster mode only (sweep_job): write again every index entry the record
-- implies. The index steps follow a script in steps of their own, so a crash
-- between them leaves an entry missing or dangling; the store put the job in
-- K_DUE first (workers/store/core.py), so the sweep comes here and repairs it.
local function reindex(now)
  local f = redis.call('HMGET', K_RECORD, 'status', 'order', 'resend', 'deadline')
  local status = f[1]
  if not status then
    unqueue()
    redis.call('ZREM', K_REQUEUE, MEMBER)
    redis.call('ZREM', K_ACTIVE, JOB_ID)
    return
  end
  if status == STATUS_INITIALIZED then
    redis.call('ZADD', K_QUEUE, f[2], MEMBER)
    if f[3] then
      redis.call('ZADD', K_REQUEUE, 'NX', now, MEMBER)
    end
  else
    unqueue()
    redis.call('ZREM', K_REQUEUE, MEMBER)
  end
  if is_terminal(status) then
    redis.call('ZREM', K_ACTIVE, JOB_ID)
  elseif tonumber(f[4] or '0') > 0 then
    mark_active(tonumber(f[4]))
  else
    local clock = hget_num('poll_timeout')
    if clock == 0 then
      clock = hget_num('max_runtime')
    end
    mark_active(now + clock * 1000)
  end
  redis.call('ZADD', K_TENANT, 'NX', f[2], JOB_ID)
  local tomb_ms = redis.call('PTTL', K_TOMB)
  if tomb_ms > 0 then
    keep_listed_until(now + tomb_ms)
  end
end
