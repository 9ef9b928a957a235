-- The Lua functions every Jobgate script shares. The generated prelude
-- (workers/store/scripts.py) comes first: the statuses (STATUS_*), TERMINAL,
-- the error codes (CODE_*) and RETRYABLE (workers/states.py), the windows and
-- limits (workers/limits.py), the KEYS (K_RECORD, ...), the common ARGV
-- (ERROR_ID, TOMB_TTL_MS, INDEX_TTL_MS, TOKEN) and ARGS, the script's own
-- arguments.

-- 'tenant:id' (the queue's member) and 'id' (the tenant index's member).
local MEMBER = string.match(K_RECORD, '{(.*)}$')
local JOB_ID = string.match(MEMBER, '^[^:]*:(.*)$')

-- The job's queue index (workers/keys.py queue_index): that of its queue and
-- its priority, both in its record from its creation. Else KEYS' K_QUEUE: the
-- create script's, or the index of a job made before queues had priorities.
local placed = redis.call('HMGET', K_RECORD, 'queue', 'priority')
local QUEUE_NAME, PRIORITY = placed[1], tonumber(placed[2])
local function priority_index(priority)
  return QUEUE_INDEX_PREFIX .. QUEUE_NAME .. ':' .. priority
end
if QUEUE_NAME then
  K_QUEUE = priority_index(PRIORITY)
end

-- How many jobs a worker of its queue takes before this waiting one: those
-- ahead of it at its priority, and every one of a higher priority.
local function queue_position()
  local rank = redis.call('ZRANK', K_QUEUE, MEMBER)
  if not rank or not QUEUE_NAME then
    return rank or false
  end
  for p = PRIORITY + 1, HIGHEST_PRIORITY do
    rank = rank + redis.call('ZCARD', priority_index(p))
  end
  return rank
end

-- Redis's clock in ms (workers/store/values.py redis_ms reads TIME the same way),
-- read once a call: a script is one atomic step, at one time.
local NOW_MS = nil
local function now_ms()
  if NOW_MS == nil then
    local t = redis.call('TIME')
    NOW_MS = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW_MS
end

-- Record fields that no script changes once create_job has written them:
-- read from Redis once a call (a field the record lacks is not remembered).
local FIXED_FIELDS = {poll_timeout = true, retention = true, max_runtime = true,
  max_attempts = true}
local fixed = {}

local function hget_num(field)
  local known = fixed[field]
  if known ~= nil then
    return known
  end
  local raw = redis.call('HGET', K_RECORD, field)
  if raw and FIXED_FIELDS[field] then
    fixed[field] = tonumber(raw)
  end
  return tonumber(raw or '0')
end

local function is_terminal(status)
  return TERMINAL[status] == true
end


-- The stream's entry for a state: status, progress, message and change number.
local function add_event(status, progress, ev)
  return redis.call('XADD', K_EVENTS, 'MAXLEN', EVENTS_KEPT, '*', 's', status, 'p', progress,
    'm', redis.call('HGET', K_RECORD, 'message') or '', 'v', ev)
end

-- Wake every waiter blocked on the job's stream. The stream exists only while
-- someone waits or streams (ensure_stream): a job nobody watches costs no
-- stream and no write here but the change count. It keeps the last
-- EVENTS_KEPT changes, so an SSE client that reconnects resumes exactly, and
-- it never outlives the job: ``life_ms`` caps its TTL (blocked readers are
-- served when the script ends, so even 1 ms wakes them).
-- Every change of status, progress or message counts in the record's ``ev``
-- (the SSE event id, app/events.py): one HINCRBY, however many watch; ``gone``:
-- the record was just deleted, nothing to count. ``progress`` nil: the
-- record's, read only when there is a stream.
local function notify(status, progress, life_ms, gone)
  local ev = 0
  if not gone then
    ev = redis.call('HINCRBY', K_RECORD, 'ev', 1)
  end
  if redis.call('EXISTS', K_EVENTS) == 0 then
    return
  end
  progress = progress or redis.call('HGET', K_RECORD, 'progress') or '0'
  life_ms = life_ms or redis.call('PTTL', K_RECORD)
  add_event(status, progress, ev)
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
  local id = add_event(status, progress, hget_num('ev'))
  redis.call('PEXPIRE', K_EVENTS, math.max(1, math.min(EVENTS_TTL_MS, redis.call('PTTL', K_RECORD))))
  return id
end

-- 1 once this call has queued a webhook delivery: scripts that may end or
-- advance a job return it, so their caller can dispatch it at once (else the
-- sweep does, workers/webhooks.py).
local HOOKED = 0

-- The job has a callback that wants ``event`` (done, failed, progress): queue a
-- delivery, due now, under a new webhook id (the same for all its retries),
-- with what the event says; the record's callback state becomes pending.
local function add_hook(event, status, progress, message, err)
  local cb = redis.call('HMGET', K_RECORD, 'cb', 'cbe')
  if not cb[1] or not string.find(cb[2] or '', ',' .. event .. ',', 1, true) then
    return
  end
  local now = now_ms()
  local id = 'msg_' .. ERROR_ID
  redis.call('HSET', K_HOOKS, id, cjson.encode({job = MEMBER, event = event, url = cb[1],
    change = hget_num('ev'), status = status, progress = tonumber(progress) or 0,
    message = message, error = err or '', at = now, attempts = 0}))
  redis.call('ZADD', K_HOOKS_DUE, now, id)
  redis.call('PEXPIRE', K_HOOKS, INDEX_TTL_MS)
  redis.call('PEXPIRE', K_HOOKS_DUE, INDEX_TTL_MS)
  redis.call('HSET', K_RECORD, 'cbs', CALLBACK_PENDING, 'cba', 0, 'cbn', id)
  redis.call('HDEL', K_RECORD, 'cbh')
  HOOKED = 1
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

-- Results in chunks (workers/store/chunks.py). A running job's partial rows
-- are K_PARTIAL, then K_PARTIAL:1, :2, ... once its worker starts a new chunk
-- (the record's 'pchunks' counts them then). A DONE job whose result is kept
-- in chunks has them as K_RESULT:0 .. n-1 (the record's 'result_chunks' = n),
-- and K_RESULT holds their small manifest. A job with one partial key and an
-- ordinary result has neither field: small results cost nothing more.
local function partial_chunk(i)
  if i == 0 then
    return K_PARTIAL
  end
  return K_PARTIAL .. ':' .. i
end

local function result_chunk(i)
  return K_RESULT .. ':' .. i
end

-- A chunk grown by APPEND holds up to twice its length (Redis preallocates
-- what it expects the next APPEND to need, up to 1 MiB more): written once
-- more, it holds just its bytes. Done as a chunk is complete.
local function compact(key)
  local value = redis.call('GET', key)
  if value then
    redis.call('SET', key, value, 'KEEPTTL')
  end
end

-- Delete the partial rows, every chunk of them.
local function del_partial()
  local n = hget_num('pchunks')
  redis.call('DEL', K_PARTIAL)
  for i = 1, n - 1 do
    redis.call('DEL', partial_chunk(i))
  end
  if n > 0 then
    redis.call('HDEL', K_RECORD, 'pchunks')
  end
end

-- Delete the result, its chunks first (the record counts them).
local function del_result()
  local n = hget_num('result_chunks')
  for i = 0, n - 1 do
    redis.call('DEL', result_chunk(i))
  end
  if n > 0 then
    redis.call('HDEL', K_RECORD, 'result_chunks')
  end
  redis.call('DEL', K_RESULT)
end

local function expire_result(ms)
  for i = 0, hget_num('result_chunks') - 1 do
    redis.call('PEXPIRE', result_chunk(i), ms)
  end
  redis.call('PEXPIRE', K_RESULT, ms)
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
  -- The chunks of its rows, and of a large result being written: one read.
  local chunks = redis.call('HMGET', K_RECORD, 'pchunks', 'result_chunks')
  redis.call('PEXPIRE', K_PARTIAL, live_ms)
  for i = 1, (tonumber(chunks[1]) or 0) - 1 do
    redis.call('PEXPIRE', partial_chunk(i), live_ms)
  end
  for i = 0, (tonumber(chunks[2]) or 0) - 1 do
    redis.call('PEXPIRE', result_chunk(i), live_ms)
  end
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
  notify(STATUS_INITIALIZED)
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
  redis.call('DEL', K_HB, K_LEASE)
  del_partial()
  local event = EVENT_FAILED
  if status == STATUS_DONE then
    event = EVENT_DONE
    -- (The record keeps no DONE message; its webhook says it: records.py's words.)
    message = string.format('Done in %.3f seconds', (finished_at - hget_num('started')) / 1000)
  end
  if ttl <= 0 then
    add_hook(event, status, redis.call('HGET', K_RECORD, 'progress') or '0', message, err)
    del_result()
    redis.call('DEL', K_RECORD)
    redis.call('PEXPIRE', K_TOMB, math.max(1, ttl + TOMB_TTL_MS))
    keep_listed_until(now + math.max(1, ttl + TOMB_TTL_MS))
    notify(status, 0, 1, true)
    return ABSENT_GONE
  end
  local progress = PROGRESS_DONE
  -- (When it expires is 'finished' + 'retention': workers/store/records.py.)
  redis.call('HSET', K_RECORD, 'status', status, 'finished', finished_at)
  if status == STATUS_DONE then
    expire_result(ttl)
    -- A DONE job's progress is PROGRESS_DONE and its message 'Done in <its
    -- run time> seconds', by definition (records.py reads them so, from
    -- 'started' and 'finished'): neither is kept.
    redis.call('HDEL', K_RECORD, 'progress', 'message')
  else
    progress = redis.call('HGET', K_RECORD, 'progress') or '0'
    del_result()
    redis.call('HSET', K_RECORD, 'message', message)
  end
  if err then
    redis.call('HSET', K_RECORD, 'error', err)
  end
  -- What only a live job needs: its lease, poll deadline, last message's
  -- time (lost_message.lua), place in the queue, runtime and attempts
  -- limits. Fewer bytes kept for the retention (the record stays a listpack
  -- of a smaller size class). 'msgs' stays: how many messages the job took.
  redis.call('HDEL', K_RECORD, 'lease', 'deadline', 'lease_ms', 'sent', 'order',
    'max_runtime', 'max_attempts')
  redis.call('PEXPIRE', K_RECORD, ttl)
  redis.call('PEXPIRE', K_TOMB, ttl + TOMB_TTL_MS)
  keep_listed_until(now + ttl + TOMB_TTL_MS)
  notify(status, progress, math.min(ttl, FINAL_EVENT_TTL_MS))
  add_hook(event, status, progress, message, err)
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
  -- The terminal event's webhook delivery (add_hook), written again while the
  -- record says it waits for its first attempt: HSETNX and ZADD NX leave one
  -- that is there as it is; one delivered whose record was not told yet goes
  -- again under the same webhook id (at least once, as ever).
  if is_terminal(status) then
    local cb = redis.call('HMGET', K_RECORD, 'cb', 'cbe', 'cbs', 'cba', 'cbn', 'progress',
      'message', 'error', 'started', 'finished')
    local event = EVENT_FAILED
    if status == STATUS_DONE then
      event = EVENT_DONE
    end
    if cb[1] and cb[5] and cb[3] == CALLBACK_PENDING and tonumber(cb[4] or '0') == 0
        and string.find(cb[2] or '', ',' .. event .. ',', 1, true) then
      local progress, message = tonumber(cb[6]) or 0, cb[7] or ''
      if status == STATUS_DONE then
        progress = PROGRESS_DONE
        message = string.format('Done in %.3f seconds',
          (tonumber(cb[10]) - tonumber(cb[9])) / 1000)
      end
      redis.call('HSETNX', K_HOOKS, cb[5], cjson.encode({job = MEMBER, event = event,
        url = cb[1], change = hget_num('ev'), status = status, progress = progress,
        message = message, error = cb[8] or '', at = now, attempts = 0}))
      redis.call('ZADD', K_HOOKS_DUE, 'NX', now, cb[5])
      redis.call('PEXPIRE', K_HOOKS, INDEX_TTL_MS)
      redis.call('PEXPIRE', K_HOOKS_DUE, INDEX_TTL_MS)
    end
  end
  -- A terminal record keeps no 'order' (finish): its creation time scores it
  -- as create_job did, but for the sequence within its millisecond.
  local order = f[2] or (hget_num('created') * 1000)
  redis.call('ZADD', K_TENANT, 'NX', order, JOB_ID)
  local tomb_ms = redis.call('PTTL', K_TOMB)
  if tomb_ms > 0 then
    keep_listed_until(now + tomb_ms)
  end
end
