"""What every part of the store shares: its clients, settings and scripts."""

from __future__ import annotations

import json
from typing import Any

import redis
from redis.commands.core import Script

from workers import keys as keyspace
from workers import registry
from workers.broker import Broker
from workers.config import Settings
from workers.keys import JobKeys
from workers.queues import PRIORITIES, job_queue
from workers.registry import HIGHEST_PRIORITY
from workers.states import Status
from workers.store.cluster import (
    APPLY_INDEX_LUA,
    COUNT_ACTIVE_LUA,
    DUE_FIRST,
    DUE_SOON_LUA,
    KEYED_SCRIPTS,
    queue_eval,
)
from workers.store.scripts import (
    INDEX_KEYS,
    SCRIPT_NAMES,
    CommonArgs,
    CreateOutcome,
    Tag,
    lua_source,
    script_keys,
)
from workers.store.values import new_id


class StoreCore:
    """Clients, settings and the registered scripts, with the one way to call them."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        blocking_client: redis.Redis | None = None,
        broker_client: redis.Redis | None = None,
    ) -> None:
        self.redis = client
        self.blocking = blocking_client or client
        self.settings = settings
        self.cluster = settings.redis_mode == "cluster"
        self._scripts: dict[str, Script] = {
            name: client.register_script(lua_source(name, self.cluster)) for name in SCRIPT_NAMES
        }
        self._index_ttl = self.index_ttl
        # The broker's keys, where the sweep looks for messages (None: a broker
        # that is not Redis, where no message can be found by its id).
        self.broker: Broker | None = Broker(broker_client or client, self.queues())
        if settings.broker_url != settings.redis_url and broker_client is None:
            self.broker = None

    @property
    def index_ttl(self) -> int:
        """Seconds the longest-lived job can exist: how long index entries matter."""
        runtimes = [t.runtime_limit(self.settings.max_runtime) for t in registry.all_types()]
        longest_clock = max(self.settings.poll_timeout_max, self.settings.max_runtime, *runtimes)
        return longest_clock + self.settings.retention_max

    def _keys(self, keys: JobKeys, queue_key: str | None = None) -> list[str]:
        queue_key = queue_key or keyspace.queue_index(self.settings.queue)
        return script_keys(keys, queue_key, cluster=self.cluster)

    def _argv(self, token: str, *args: Any) -> list[Any]:
        common = CommonArgs(
            error_id=new_id(),
            tomb_ttl_ms=self.settings.tombstone_ttl * 1000,
            index_ttl_ms=self._index_ttl * 1000,
            token=token,
        )
        return [*common, *args]

    def _run(
        self,
        name: str,
        keys: JobKeys,
        *args: Any,
        token: str = "",
        client: Any = None,
        queue_key: str | None = None,
    ) -> list[Any]:
        """Call script ``name`` for the job (on ``client``: a pipeline, say)."""
        if self.cluster:
            assert client is None, "cluster mode: no script in a pipeline (_run_many)"
            return self._run_in_cluster(name, keys, *args, token=token, queue_key=queue_key)
        script = self._scripts[name]
        reply: list[Any] = script(
            keys=self._keys(keys, queue_key), args=self._argv(token, *args), client=client
        )
        return reply

    def queues(self) -> list[str]:
        """Every job queue of the registered types (broker names), the default first."""
        return [job_queue(self.settings, name) for name in registry.queues()]

    def queue_indexes(self, queue: str) -> list[str]:
        """A queue's indexes, the most urgent priority first."""
        return [keyspace.queue_index(queue, p) for p in reversed(PRIORITIES)]

    def _run_many(self, name: str, calls: list[tuple[JobKeys, tuple[Any, ...]]]) -> list[Any]:
        """Script ``name`` for each (job, args): one pipeline, or in cluster
        mode one call after another (each with its index steps)."""
        if self.cluster:
            return [self._run(name, keys, *args) for keys, args in calls]
        pipe = self.redis.pipeline(transaction=False)
        for keys, args in calls:
            self._run(name, keys, *args, client=pipe)
        return list(pipe.execute())

    def _index_pipeline(self) -> Any:
        """A cluster pipeline that routes EVAL by its key like a single call.

        redis-py 8's ClusterPipeline asks the default node ``COMMAND GETKEYS``
        for every EVAL it queues (a round trip each) unless a policy resolver
        names EVAL as keyed; RedisCluster.pipeline() does not hand its own
        resolver on, so it is set here. Without it (another redis-py), the
        pipeline is correct, only slower."""
        pipe: Any = self.redis.pipeline(transaction=False)
        pipe._policy_resolver = KEYED_SCRIPTS
        return pipe

    def _index_key(self, name: str, keys: JobKeys, queue_key: str | None = None) -> str:
        """The key of index ``name`` (K_TENANT, ...) for the job; a name that
        is no index's is a key already (a queue index by queue and priority,
        as _prelude.lua names it from the record)."""
        build = INDEX_KEYS.get(name)
        if build is None:
            return name
        return build(keys, queue_key or keyspace.queue_index(self.settings.queue))

    def _run_in_cluster(
        self, name: str, keys: JobKeys, *args: Any, token: str, queue_key: str | None
    ) -> list[Any]:
        """Cluster mode: what the shared indexes tell the script, first; the
        script on the job's slot; then its index commands, each index key in
        an atomic step of its own (never a command across slots). Before and
        after, one pipeline each: one round trip per node it reaches."""
        given: dict[str, Any] = {}
        pipe = self._index_pipeline()
        if name in DUE_FIRST:
            due_in_ms = int(self.settings.lease_ttl * 1000)
            queue_eval(
                pipe,
                DUE_SOON_LUA,
                self._index_key("K_DUE", keys),
                due_in_ms,
                keys.task_arg(),
                self._index_ttl * 1000,
            )
        if name == "create_job":
            queue_eval(pipe, COUNT_ACTIVE_LUA, self._index_key("K_ACTIVE", keys))
        elif name == "lost_message":
            pipe.zscore(self._index_key("K_REQUEUE", keys), keys.task_arg())
        before = pipe.execute() if len(pipe) else []
        if name == "create_job":
            given["active"] = int(before[-1])
        elif name == "lost_message":
            given["requeued"] = before[-1]
        argv = [*self._argv(token, *args), json.dumps(given)]
        reply, deferred = self._scripts[name](keys=self._keys(keys, queue_key), args=argv)
        ranked: list[str] = []
        if name in ("create_job", "read_job") and reply[0] in (Tag.OK, CreateOutcome.CREATED):
            fields = dict(zip(reply[1][::2], reply[1][1::2], strict=True))
            if fields.get("status") == Status.INITIALIZED.value:
                ranked = self._position_indexes(fields, queue_key)
        position = self._apply_deferred(keys, deferred, ranked, queue_key)
        if ranked:
            reply[5] = position
        return list(reply)

    def _position_indexes(self, fields: dict[Any, Any], queue_key: str | None) -> list[str]:
        """The job's queue index, then those of its queue's higher priorities
        (what _prelude.lua's queue_position reads in single mode)."""
        queue, priority = fields.get("queue"), fields.get("priority")
        if queue is None or priority is None:
            return [queue_key or keyspace.queue_index(self.settings.queue)]
        higher = range(int(priority) + 1, HIGHEST_PRIORITY + 1)
        return [keyspace.queue_index(str(queue), p) for p in (int(priority), *higher)]

    def _apply_deferred(
        self,
        keys: JobKeys,
        deferred: list[list[Any]],
        ranked: list[str],
        queue_key: str | None = None,
    ) -> Any:
        """Apply a script's index commands, one EVAL per index key, in one
        pipeline; with ``ranked`` (the job's queue index and those of higher
        priorities), the job's queue position after them: its rank in its own
        index plus every job waiting at a higher priority."""
        by_key: dict[str, list[Any]] = {}
        for name, command, *args in deferred:
            key = self._index_key(name, keys, queue_key)
            by_key.setdefault(key, []).extend([len(args), command, *args])
        listed = self._index_key("K_LISTED", keys)
        pipe = self._index_pipeline()
        for key, argv in by_key.items():
            queue_eval(pipe, APPLY_INDEX_LUA, key, *argv)
        if ranked:
            pipe.zrank(ranked[0], keys.task_arg())
            for index in ranked[1:]:
                pipe.zcard(index)
        replies = pipe.execute() if len(pipe) else []
        listing = dict(zip(by_key, replies, strict=False)).get(listed)
        if listing:
            # The tenant's index after the listing. A crash between the two
            # leaves ids of gone jobs (the listing drops them when it reads
            # them) or an expiry not yet moved (the sweep's next look at a
            # job of the tenant moves it).
            forgotten, expires = listing
            tenant_index = self._index_key("K_TENANT", keys)
            pipe = self.redis.pipeline(transaction=False)
            if forgotten:
                pipe.zrem(tenant_index, *forgotten)
            if int(expires) > 0:
                pipe.pexpireat(tenant_index, int(expires))
            if len(pipe):
                pipe.execute()
        if not ranked:
            return None
        rank, *ahead = replies[len(by_key) :]
        return False if rank is None else int(rank) + sum(int(n) for n in ahead)
