"""Constants and small helpers shared by the unit tests (fixtures live in conftest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workers.keys import PREFIX, JobKeys

POLL_TIMEOUT = 10
RETENTION = 60
MAX_RUNTIME = 100
TOMBSTONE_TTL = 5

# make_job(status=..., poll_timeout=..., retention=...) -> JobKeys
MakeJob = Callable[..., JobKeys]

# How far a PTTL read back may have run down since the script set it.
TTL_SLACK_MS = 1000


def jobgate_ttls(client: Any) -> dict[str, int]:
    """PTTL of every ``jobgate:`` key (-1: no TTL)."""
    return {key: int(client.pttl(key)) for key in client.scan_iter(f"{PREFIX}*")}


def assert_ttl_close(client: Any, key: str, expected_ms: int) -> None:
    """The key exists and its TTL is ``expected_ms`` less at most the test's own run time."""
    pttl = int(client.pttl(key))
    assert expected_ms - TTL_SLACK_MS < pttl <= expected_ms, (key, pttl, expected_ms)


def record_hash(client: Any, keys: JobKeys) -> dict[str, str]:
    raw: dict[str, str] = client.hgetall(keys.record)
    return raw
