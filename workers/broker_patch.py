"""A fix for kombu's Redis channel, and one cost less, applied when the Celery
app is made.

The bug (README, "Redis restarts"; docs/upstream-redis-close-after-collect.md):
``kombu.transport.redis.Channel.close`` first reads the reply of a BRPOP in
flight and deletes fanout bindings, both through the broker. When the broker
has just gone away (a Redis restart), either step raises a connection error and
``close()`` stops half-way: the channel is not marked closed and its pools are
already dropped. Celery 5.7's consumer then, on that connection error, calls
``Connection.collect()`` (which detaches the transport: ``transport.client =
None``) and ``Connection.close()``, which closes the same default channel
again. This time the channel gets to requeue its unacknowledged messages
(``acks_late``: every job running at that moment), needs a new pool, reads
the connection parameters from the detached transport, and raises
``AttributeError: 'NoneType' object has no attribute 'hostname'``. That is not
a connection error, so ``ignore_errors`` lets it through and the worker dies
("Unrecoverable error"). It needs jobs in flight when Redis goes: under load,
every restart.

The fix makes ``close()`` finish what does not need the broker when a step
that needs it fails, so the channel is closed once, while its transport is
still attached, and any later ``close()`` does nothing. Unacknowledged
messages are requeued if Redis is already back; if not, they stay in kombu's
``unacked`` hash and the visibility timeout restores them (Jobgate runs a job
once whatever number of its messages arrive).

The cost: kombu's ``Channel.conn_or_acquire`` makes a new ``redis.Redis``
client for every use of the channel that has none at hand, which is twice a
task (the unacked record when a message is delivered, its removal at the
ack). Building a redis-py 8 client costs ~130 µs of CPU (its table of reply
callbacks), more than anything else Celery does for a short task. A client
holds no connection of its own (each command borrows one from the pool and
gives it back), so the channel keeps one over its pool and hands that out;
a new pool (after a reconnect) gets a new client.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from importlib.metadata import version
from queue import Empty
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

log = logging.getLogger(__name__)

# Versions whose Channel.close() this was written against and tested with.
# A kombu outside this range is left alone: re-check the bug, then widen it.
PATCHED_KOMBU = ("5.3", "5.8")


def _major_minor(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def applies_to(kombu_version: str) -> bool:
    low, high = (_major_minor(v) for v in PATCHED_KOMBU)
    return low <= _major_minor(kombu_version) < high


def _close(self: Any) -> None:
    """``Channel.close`` of kombu 5.7.0, with the broker steps allowed to fail."""
    self._closing = True
    if self._in_poll:
        # The BRPOP reply died with the connection: nothing to deliver.
        with contextlib.suppress(Empty, *self.connection_errors):
            self._brpop_read()
    self._in_poll = None
    if not self.closed:
        self.connection.cycle.discard(self)
        client = self.__dict__.get("client")  # only if the property was used
        if client is not None:
            for queue in self._fanout_queues:
                if queue in self.auto_delete_queues:
                    with contextlib.suppress(*self.connection_errors):
                        self.queue_delete(queue, client=client)
        self._disconnect_pools()
        self._close_clients()
    # Marks the channel closed first, then requeues unacked messages (which
    # may raise a connection error: the caller ignores those).
    virtual.Channel.close(self)  # type: ignore[no-untyped-call]


_CLIENT = "_jobgate_sync_client"


@contextlib.contextmanager
def _conn_or_acquire(self: Any, client: Any = None) -> Iterator[Any]:
    """``Channel.conn_or_acquire`` of kombu 5.7.0, with one client per pool."""
    if client:
        yield client
        return
    pool = self.pool
    cached = self.__dict__.get(_CLIENT)
    if cached is None or cached.connection_pool is not pool:
        cached = self._create_client()
        self.__dict__[_CLIENT] = cached
    yield cached


def apply() -> bool:
    """Install the fixed ``close`` and the kept client (once); False when this
    kombu is not covered."""
    if kombu_redis.Channel.close is _close:
        return True
    installed = version("kombu")
    if not applies_to(installed):
        log.warning("kombu %s: the Redis channel close patch is not applied", installed)
        return False
    kombu_redis.Channel.close = _close  # type: ignore[method-assign]
    kombu_redis.Channel.conn_or_acquire = _conn_or_acquire  # type: ignore[method-assign]
    return True
