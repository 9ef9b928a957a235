"""What every part of the store shares: its clients, settings and scripts."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import redis
from redis.commands.core import Script

from workers import registry
from workers.broker import Broker
from workers.config import Settings
from workers.keys import JobKeys
from workers.store.scripts import SCRIPT_NAMES, CommonArgs, lua_source, script_keys
from workers.store.values import new_id


@lru_cache(maxsize=4096)
def _script_keys(keys: JobKeys, queue: str) -> tuple[str, ...]:
    """A job's script KEYS, built once while it is polled (15 key names a call)."""
    return tuple(script_keys(keys, queue))


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
        self._scripts: dict[str, Script] = {
            name: client.register_script(lua_source(name)) for name in SCRIPT_NAMES
        }
        self._index_ttl = self.index_ttl
        # The broker's keys, where the sweep looks for messages (None: a broker
        # that is not Redis, where no message can be found by its id).
        self.broker: Broker | None = Broker(broker_client or client, settings.queue)
        if settings.broker_url != settings.redis_url and broker_client is None:
            self.broker = None

    @property
    def index_ttl(self) -> int:
        """Seconds the longest-lived job can exist: how long index entries matter."""
        runtimes = [t.runtime_limit(self.settings.max_runtime) for t in registry.all_types()]
        longest_clock = max(self.settings.poll_timeout_max, self.settings.max_runtime, *runtimes)
        return longest_clock + self.settings.retention_max

    def _keys(self, keys: JobKeys) -> tuple[str, ...]:
        return _script_keys(keys, self.settings.queue)

    def _argv(self, token: str, *args: Any) -> list[Any]:
        common = CommonArgs(
            error_id=new_id(),
            tomb_ttl_ms=self.settings.tombstone_ttl * 1000,
            index_ttl_ms=self._index_ttl * 1000,
            token=token,
        )
        return [*common, *args]

    def _run(
        self, name: str, keys: JobKeys, *args: Any, token: str = "", client: Any = None
    ) -> list[Any]:
        """Call script ``name`` for the job (on ``client``: a pipeline, say)."""
        script = self._scripts[name]
        reply: list[Any] = script(
            keys=self._keys(keys), args=self._argv(token, *args), client=client
        )
        return reply
