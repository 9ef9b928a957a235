"""The webhook side of the store: deliveries due, their payloads, their outcomes.

A delivery is queued by the script that changes the job (``add_hook`` in
workers/lua/_prelude.lua): an entry of ``jobgate:{hooks}`` (webhook id → what
to deliver, JSON) and of ``jobgate:{hooks}:due`` (scored by when it is due).
Whoever dispatches (the sweep; a worker or the API right after the change)
*claims* due ones atomically, moving each WEBHOOK_CLAIM_MS ahead, and hands it
to a task; the task's outcome removes it (delivered, given up) or reschedules
it (a retry). A task that dies with it leaves it due again once the claim
expires: at least once, and nothing lives in a worker's memory.
"""

from __future__ import annotations

from typing import Any

import orjson

from workers import keys as keyspace
from workers import limits
from workers.states import CallbackState
from workers.store.connection import backend_errors
from workers.store.core import StoreCore

# KEYS: due set. ARGV: claim ms, batch. Returns the ids claimed.
CLAIM_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), id)
end
return ids
"""

# KEYS: hooks hash, due set (one slot: keys.py), then (single mode) the
# job's record. ARGV: id, state (pending = retry, delivered, failed),
# attempts, HTTP status ('' = none), retry delay ms, the delivery's JSON (kept
# for the retry), TTL ms of the bookkeeping. Returns 0 when the delivery was
# already settled.
_SETTLE_DELIVERY = """
local id, state = ARGV[1], ARGV[2]
if redis.call('HEXISTS', KEYS[1], id) == 0 then
  return 0
end
if state == 'pending' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], id, ARGV[6])
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), id)
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
else
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
"""

# The record shows the state when this is still its latest delivery. KEYS:
# ..., the job's record last. ARGV as above.
_SETTLE_RECORD = """
local record = KEYS[#KEYS]
if redis.call('HGET', record, 'cbn') == ARGV[1] then
  redis.call('HSET', record, 'cbs', ARGV[2], 'cba', ARGV[3])
  if ARGV[4] == '' then
    redis.call('HDEL', record, 'cbh')
  else
    redis.call('HSET', record, 'cbh', ARGV[4])
  end
end
return 1
"""

# Single mode: both in one step.
SETTLE_LUA = _SETTLE_DELIVERY + _SETTLE_RECORD
# Redis Cluster: the record is in the job's slot, the deliveries in theirs: the
# delivery settled first, then the record (a crash between the two leaves the
# record's callback state one attempt behind; the delivery itself is right).
SETTLE_DELIVERY_LUA = _SETTLE_DELIVERY + "return 1\n"
SETTLE_RECORD_LUA = _SETTLE_RECORD


class Hooks(StoreCore):
    @property
    def _claim(self) -> Any:
        script = getattr(self, "_claim_script", None)
        if script is None:
            script = self._claim_script = self.redis.register_script(CLAIM_LUA)
        return script

    @property
    def _settle(self) -> Any:
        script = getattr(self, "_settle_script", None)
        if script is None:
            script = self._settle_script = self.redis.register_script(SETTLE_LUA)
        return script

    @property
    def _settle_split(self) -> tuple[Any, Any]:
        scripts = getattr(self, "_settle_split_scripts", None)
        if scripts is None:
            scripts = self._settle_split_scripts = (
                self.redis.register_script(SETTLE_DELIVERY_LUA),
                self.redis.register_script(SETTLE_RECORD_LUA),
            )
        return scripts

    @backend_errors
    def claim_hooks(self, batch: int = limits.WEBHOOK_BATCH) -> list[str]:
        """Claim the deliveries due now (each for WEBHOOK_CLAIM_MS): their ids."""
        ids: Any = self._claim(keys=[keyspace.HOOKS_DUE], args=[limits.WEBHOOK_CLAIM_MS, batch])
        return [str(i) for i in ids]

    @backend_errors
    def hook(self, hook_id: str) -> dict[str, Any] | None:
        """What delivery ``hook_id`` carries; None once it is settled."""
        raw: Any = self.redis.hget(keyspace.HOOKS, hook_id)
        return orjson.loads(raw) if raw else None

    @backend_errors
    def settle_hook(
        self,
        hook_id: str,
        record_key: str,
        state: CallbackState,
        payload: dict[str, Any],
        http_status: int | None,
        retry_ms: int = 0,
    ) -> bool:
        """Record one attempt's outcome: ``PENDING`` retries after ``retry_ms``,
        ``DELIVERED``/``FAILED`` end the delivery. False if already settled."""
        args = [
            hook_id,
            state.value,
            payload.get("attempts", 0),
            "" if http_status is None else http_status,
            retry_ms,
            orjson.dumps(payload).decode(),
            self._index_ttl * 1000,
        ]
        if self.cluster:
            delivery, record = self._settle_split
            if not delivery(keys=[keyspace.HOOKS, keyspace.HOOKS_DUE], args=args):
                return False
            record(keys=[record_key], args=args)
            return True
        applied: Any = self._settle(
            keys=[keyspace.HOOKS, keyspace.HOOKS_DUE, record_key], args=args
        )
        return bool(applied)

    @backend_errors
    def hooks_pending(self) -> int:
        """Deliveries not settled yet (for tests and operators)."""
        return int(self.redis.zcard(keyspace.HOOKS_DUE))
