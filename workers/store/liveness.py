"""Operations: Redis reachable, workers alive, the /metrics snapshot, memory policy."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import redis

from workers import keys as keyspace
from workers import limits
from workers.errors import BackendUnavailable
from workers.store.connection import backend_errors
from workers.store.core import StoreCore

log = logging.getLogger("workers.store")


class Liveness(StoreCore):
    @backend_errors
    def ping(self) -> bool:
        return bool(self.redis.ping())

    @backend_errors
    def mark_worker_alive(
        self, worker: str, ttl: int = limits.WORKER_ALIVE_S, queues: Iterable[str] = ()
    ) -> None:
        """Record that ``worker`` is alive, consuming ``queues``; entries older
        than ``ttl`` are trimmed."""
        now = float(self.redis.time()[0])
        # One step where one Redis holds both sets; a Cluster has no
        # transaction across slots, and a heartbeat half written is rewritten
        # at the next one.
        pipe = self.redis.pipeline(transaction=not self.cluster)
        for key in [keyspace.WORKERS, *(keyspace.queue_workers(q) for q in queues)]:
            pipe.zadd(key, {worker: now})
            pipe.zremrangebyscore(key, "-inf", now - ttl)
            pipe.expire(key, ttl)
        pipe.execute()

    @backend_errors
    def workers_seen(
        self, within: int = limits.WORKER_ALIVE_S, queue: str | None = None
    ) -> list[str]:
        """Workers seen alive within ``within`` s (only those consuming ``queue``, if given)."""
        key = keyspace.WORKERS if queue is None else keyspace.queue_workers(queue)
        now = float(self.redis.time()[0])
        seen: Any = self.redis.zrangebyscore(key, now - within, "+inf")
        return [str(name) for name in seen]

    @backend_errors
    def metrics_snapshot(self) -> dict[str, Any]:
        """What /metrics reports, read in one round trip."""
        queues = self.queues()
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keyspace.STATS)
        if not self.cluster:  # no TIME in a cluster pipeline (it names no key)
            pipe.time()
        for queue in queues:
            for index in [keyspace.queue_index(queue), *self.queue_indexes(queue)]:
                pipe.zcard(index)
        replies = pipe.execute()
        if self.cluster:
            replies.insert(1, self.redis.time())
        stats, (now, _), *counts = replies
        per_queue = len(counts) // len(queues)
        queued = {
            queue: sum(int(n) for n in counts[i * per_queue : (i + 1) * per_queue])
            for i, queue in enumerate(queues)
        }
        messages = self.broker.waiting() if self.broker is not None else {}
        workers = self.redis.zcount(keyspace.WORKERS, float(now) - limits.WORKER_ALIVE_S, "+inf")
        return {
            "stats": {str(k): int(v) for k, v in stats.items()},
            "queued": queued,
            "messages": messages,
            "workers": int(workers),
        }

    @backend_errors
    def memory_policy(self) -> str | None:
        """Redis's maxmemory-policy, or None when CONFIG is not allowed."""
        try:
            reply = self.redis.config_get("maxmemory-policy")
        except redis.ResponseError:
            return None
        policy = reply.get("maxmemory-policy")
        return str(policy) if policy is not None else None

    def warn_unless_noeviction(self) -> None:
        try:
            policy = self.memory_policy()
        except BackendUnavailable:
            return
        if policy not in (None, "noeviction"):
            log.warning(
                "Redis maxmemory-policy is %r: under memory pressure Redis may evict job "
                "state. Run it with maxmemory-policy noeviction.",
                policy,
            )
