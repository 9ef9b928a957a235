"""The kombu Redis channel fix is installed for the kombu this project runs on."""

from __future__ import annotations

from importlib.metadata import version
from types import SimpleNamespace

from kombu.transport import redis as kombu_redis

from workers import broker_patch


def test_the_patch_covers_the_installed_kombu_and_replaces_channel_close() -> None:
    # Fails when kombu moves past the range: re-check the bug upstream, then widen it.
    assert broker_patch.applies_to(version("kombu"))
    assert broker_patch.apply()
    assert kombu_redis.Channel.close is broker_patch._close
    assert kombu_redis.Channel.conn_or_acquire is broker_patch._conn_or_acquire


class FakeChannel:
    """What ``conn_or_acquire`` reads of kombu's channel: its pool, a client factory."""

    def __init__(self) -> None:
        self.pool = object()
        self.made = 0

    def _create_client(self) -> SimpleNamespace:
        self.made += 1
        return SimpleNamespace(connection_pool=self.pool)


def test_the_channel_keeps_one_client_per_pool_and_passes_a_given_one_through() -> None:
    channel = FakeChannel()
    given = object()

    with broker_patch._conn_or_acquire(channel) as first:
        pass
    with broker_patch._conn_or_acquire(channel) as second:
        pass
    with broker_patch._conn_or_acquire(channel, given) as passed:
        pass
    channel.pool = object()  # reconnected: a new pool
    with broker_patch._conn_or_acquire(channel) as third:
        pass

    assert first is second and passed is given
    assert third is not first and third.connection_pool is channel.pool
    assert channel.made == 2


def test_kombu_versions_outside_the_range_are_left_alone() -> None:
    assert broker_patch.applies_to("5.7.0")
    assert not broker_patch.applies_to("5.8.0")
    assert not broker_patch.applies_to("5.2.4")
