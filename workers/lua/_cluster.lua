-- Redis Cluster mode (JOBGATE_REDIS_MODE=cluster): between the generated
-- prelude and _prelude.lua. A script then receives only the job's own keys
-- (one hash slot); K_QUEUE, K_TENANT, ... are the *names* of the shared
-- indexes, not keys. Every command on one of them is collected in DEFERRED
-- instead of run, and the script returns {its reply, DEFERRED}: the store
-- (workers/store/core.py) applies them afterwards, each index key in a step of
-- its own (never a command that spans slots). What a script reads from an
-- index comes from CLUSTER_IN (read by the store just before) or is left to
-- the store (ZRANK: the queue position, read after). A job's queue index
-- (K_QUEUE once _prelude.lua has named its queue and priority) is a key
-- under QUEUE_INDEX_PREFIX: deferred by its own name; the webhook entries
-- (K_HOOKS, K_HOOKS_DUE) and the job histograms (K_QUEUE_WAIT, K_DURATION)
-- are indexes like the others.
local SERVER = redis
local DEFERRED = {}
local INDEX = {}
for _, name in ipairs(INDEX_NAMES) do
  INDEX[name] = true
end

local function is_queue_index(key)
  return string.sub(key, 1, #QUEUE_INDEX_PREFIX) == QUEUE_INDEX_PREFIX
end

local function index_call(cmd, key, ...)
  local args = {...}
  if cmd == 'ZRANGE' and key == K_LISTED then
    -- keep_listed_until's look at the latest expiry: the store's EXTENDAT
    -- step keeps the later of the two, so 0 here.
    return {'', '0'}
  elseif cmd == 'ZRANGEBYSCORE' and key == K_LISTED then
    -- forget_expired: done on the listing's own slot (FORGET), then the
    -- tenant's index (the ids it returns).
    table.insert(DEFERRED, {key, 'FORGET', args[2], args[5]})
    return {}
  elseif cmd == 'ZCARD' and key == K_ACTIVE then
    return tonumber(CLUSTER_IN['active'] or 0)
  elseif cmd == 'ZSCORE' and key == K_REQUEUE then
    return CLUSTER_IN['requeued'] or false
  elseif (cmd == 'ZRANK' or cmd == 'ZCARD') and (key == K_QUEUE or is_queue_index(key)) then
    -- queue_position: read by the store after the index steps.
    return false
  elseif cmd == 'INCR' and key == K_SEQ then
    -- No cluster-wide counter: the microseconds of this node's clock order
    -- jobs created within one millisecond.
    return tonumber(SERVER.call('TIME')[2]) % 1000
  elseif key == K_SEQ then
    return 1
  elseif cmd == 'PEXPIREAT' and key == K_LISTED then
    -- keep_listed_until: the listing expires with its latest member, which
    -- only its own slot knows (LISTEXPIRE); the tenant's index then takes
    -- the same expiry, a step of its own.
    table.insert(DEFERRED, {key, 'LISTEXPIRE', args[1]})
    return 1
  elseif cmd == 'PEXPIREAT' and key == K_TENANT then
    return 1
  elseif cmd == 'PEXPIREAT' then
    table.insert(DEFERRED, {key, 'EXTENDAT', args[1]})
    return 1
  end
  local op = {key, cmd}
  for _, arg in ipairs(args) do
    -- A Lua number goes back to Redis as an integer: a fraction (an
    -- observation's seconds for HINCRBYFLOAT) travels as text.
    if type(arg) == 'number' and arg ~= math.floor(arg) then
      arg = string.format('%.17g', arg)
    end
    table.insert(op, arg)
  end
  table.insert(DEFERRED, op)
  return 1
end

local redis = setmetatable({
  call = function(cmd, ...)
    local key = ...
    if key ~= nil and (INDEX[key] or is_queue_index(key)) then
      return index_call(cmd, ...)
    end
    return SERVER.call(cmd, ...)
  end,
}, {__index = SERVER})
