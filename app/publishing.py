"""A submit's Celery message without a new Redis client object per message.

kombu's Redis channel (5.3 to 5.7 at least) answers ``conn_or_acquire()``,
through which every message is put on the broker, with a brand-new
``redis.Redis`` over the channel's connection pool: building that object (its
response callbacks, its retry policy, ...) was a third of what kombu spends
on a publish, and a sixth of a submit's CPU in the API. A ``redis.Redis`` is
safe to share between threads (each command takes a connection from the
pool), so the channel keeps one, made the same way, for as long as its pool
lives: when kombu drops the pool (a reconnect), the next call makes a new
client over the new pool.

Applied by ``create_app`` (the API process publishes submits); the workers
keep kombu's own behaviour. Raises nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any

from kombu.transport import redis as kombu_redis

# kombu versions whose Channel.conn_or_acquire this replaces (same shape:
# ``client`` if given, else ``self._create_client()``). Others keep their own.
COVERED_KOMBU = ((5, 3), (5, 8))

_ATTRIBUTE = "_jobgate_publisher"


def covers(kombu_version: str) -> bool:
    major, minor = (int(part) for part in kombu_version.split(".")[:2])
    low, high = COVERED_KOMBU
    return low <= (major, minor) < high


@contextmanager
def _conn_or_acquire(self: Any, client: Any = None) -> Iterator[Any]:
    if client:
        yield client
        return
    pool = self.pool
    kept = self.__dict__.get(_ATTRIBUTE)
    if kept is None or kept[0] is not pool:
        kept = (pool, self._create_client())
        self.__dict__[_ATTRIBUTE] = kept
    yield kept[1]


def apply() -> bool:
    """Install the shared client (once); False when this kombu is not covered."""
    if kombu_redis.Channel.conn_or_acquire is _conn_or_acquire:
        return True
    if not covers(version("kombu")):
        return False
    kombu_redis.Channel.conn_or_acquire = _conn_or_acquire  # type: ignore[method-assign]
    return True
