"""Redis Cluster mode's own steps (JOBGATE_REDIS_MODE=cluster): the small
one-key scripts that run before and after a job's script, and the routing
of EVAL in a cluster pipeline. The job's scripts and the deferral of their
index commands: workers/lua/_cluster.lua; the calls: StoreCore._run_in_cluster.
"""

from __future__ import annotations

from typing import Any

from redis._parsers.commands import CommandPolicies, RequestPolicy, ResponsePolicy
from redis.commands.policies import PolicyResolver, StaticPolicyResolver

# One index key's deferred commands, in order, in one atomic step (KEYS[1]).
# ARGV: for each command its argument count, its name, its arguments.
# EXTENDAT moves the key's expiry later, never earlier; LISTEXPIRE sets the
# listing's expiry to the later of the given time and its latest member's
# (keep_listed_until); FORGET drops the listing entries whose jobs left no key.
# Returns {the ids FORGET dropped, the expiry LISTEXPIRE set or 0}: the
# tenant's index follows both, in a step of its own.
APPLY_INDEX_LUA = """
local key, i, forgotten, expires = KEYS[1], 1, {}, 0
while i <= #ARGV do
  local n, cmd = tonumber(ARGV[i]), ARGV[i + 1]
  local args = {unpack(ARGV, i + 2, i + 1 + n)}
  if cmd == 'EXTENDAT' then
    local current = redis.call('PEXPIRETIME', key)
    if current == -1 or (current >= 0 and tonumber(args[1]) > current) then
      redis.call('PEXPIREAT', key, args[1])
    end
  elseif cmd == 'LISTEXPIRE' then
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    expires = math.max(tonumber(args[1]), tonumber(last[2] or '0'))
    redis.call('PEXPIREAT', key, expires)
  elseif cmd == 'FORGET' then
    forgotten = redis.call('ZRANGEBYSCORE', key, '-inf', args[1], 'LIMIT', 0, args[2])
    if #forgotten > 0 then
      redis.call('ZREM', key, unpack(forgotten))
    end
  else
    redis.call(cmd, key, unpack(args))
  end
  i = i + 2 + n
end
return {forgotten, expires}
"""

# Before a script that may make the job's next clock earlier (or create it):
# the job is due for the sweep at the latest ARGV[1] ms from now (ZADD LT).
# A crash between the script and its index steps then leaves the job where the
# sweep looks at it soon, and sweep_job writes its index entries again.
DUE_SOON_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'LT', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# The tenant's live jobs now (count_active, on the index's own slot).
COUNT_ACTIVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
return redis.call('ZCARD', KEYS[1])
"""


class _KeyedScripts(PolicyResolver):
    """EVAL and EVALSHA go to the node of their first key's slot; the rest as
    redis-py resolves it."""

    def __init__(self, fallback: PolicyResolver | None = None) -> None:
        self._fallback = fallback or StaticPolicyResolver()

    def resolve(self, command_name: str) -> CommandPolicies | None:
        if command_name in ("eval", "evalsha"):
            return CommandPolicies(
                request_policy=RequestPolicy.DEFAULT_KEYED,
                response_policy=ResponsePolicy.DEFAULT_KEYED,
            )
        return self._fallback.resolve(command_name)

    def with_fallback(self, fallback: PolicyResolver) -> PolicyResolver:
        return _KeyedScripts(fallback)


KEYED_SCRIPTS = _KeyedScripts()

# Scripts that may create a job or make its next clock earlier.
DUE_FIRST = frozenset(
    {"create_job", "start_job", "cancel_job", "fail_job", "finish_job", "hand_back", "lost_message"}
)


def queue_eval(pipe: Any, source: str, key: str, *args: Any) -> None:
    """Queue a one-key EVAL on a pipeline (redis-py's ClusterPipeline has an
    ``eval`` of its own that is not EVAL). The small scripts are sent whole:
    no NOSCRIPT to handle on a node that has never seen them."""
    pipe.execute_command("EVAL", source, 1, key, *args)
