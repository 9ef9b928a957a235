"""app/publishing.py: one Redis client per kombu channel and pool, not one per message."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import fakeredis
from kombu.connection import Connection
from kombu.transport import redis as kombu_redis

from app import publishing


def test_covers_the_installed_kombu_and_replaces_conn_or_acquire() -> None:
    # Fails when kombu moves past the range: re-check its conn_or_acquire, then widen it.
    assert publishing.covers(version("kombu"))
    assert publishing.apply()
    assert kombu_redis.Channel.conn_or_acquire is publishing._conn_or_acquire
    assert not publishing.covers("5.8.0")
    assert not publishing.covers("5.2.4")


def test_a_channel_keeps_one_client_while_its_pool_lives(monkeypatch: Any) -> None:
    publishing.apply()
    server = fakeredis.FakeServer()
    monkeypatch.setattr(
        kombu_redis.Channel,
        "_get_pool",
        lambda self, asynchronous=False: fakeredis.FakeRedis(server=server).connection_pool,
    )
    with Connection("redis://127.0.0.1:1/0") as conn:  # type: ignore[no-untyped-call]
        channel = conn.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            assert first.connection_pool is channel.pool
        given = object()
        with channel.conn_or_acquire(client=given) as client:
            assert client is given
        # kombu drops its pools on a reconnect: the next call gets a new client
        # over the new pool.
        channel._disconnect_pools()
        with channel.conn_or_acquire() as third:
            assert third is not first
            assert third.connection_pool is channel.pool
        # And the client works: a message put is there to be read.
        channel._put("q", {"body": "x", "properties": {"delivery_info": {}}})
        assert channel._size("q") == 1
