"""The kombu Redis channel fix is installed for the kombu this project runs on."""

from __future__ import annotations

from importlib.metadata import version

from kombu.transport import redis as kombu_redis

from workers import broker_patch


def test_the_patch_covers_the_installed_kombu_and_replaces_channel_close() -> None:
    # Fails when kombu moves past the range: re-check the bug upstream, then widen it.
    assert broker_patch.applies_to(version("kombu"))
    assert broker_patch.apply()
    assert kombu_redis.Channel.close is broker_patch._close


def test_kombu_versions_outside_the_range_are_left_alone() -> None:
    assert broker_patch.applies_to("5.7.0")
    assert not broker_patch.applies_to("5.8.0")
    assert not broker_patch.applies_to("5.2.4")
