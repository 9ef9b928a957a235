"""Unit fixtures: a JobStore over fakeredis (Lua through lupa), nothing on a network.

Time-dependent behaviour is driven by changing keys directly: deleting a
heartbeat key is exactly what its expiry does.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest

from tests.unit.helpers import MAX_RUNTIME, POLL_TIMEOUT, RETENTION, TOMBSTONE_TTL, MakeJob
from workers.config import Settings
from workers.keys import JobKeys
from workers.states import ErrorCode
from workers.store import CreateOutcome, JobStore

_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests never open a socket (in particular never 127.0.0.1:6379)."""

    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"unit tests must not connect anywhere (tried {address!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({}, poll_timeout_min=1, retention_min=1, tombstone_ttl=TOMBSTONE_TTL)


@pytest.fixture
def client() -> Iterator[Any]:
    fake = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    yield fake
    fake.close()


@pytest.fixture
def store(client: Any, settings: Settings) -> JobStore:
    return JobStore(client, settings)


@pytest.fixture
def keys() -> JobKeys:
    return JobKeys("t1", f"job-{next(_ids)}")


@pytest.fixture
def make_job(store: JobStore) -> MakeJob:
    """Factory: a job in the asked status, created with the module's clocks."""

    def make(
        status: str = "INITIALIZED",
        *,
        poll_timeout: int = POLL_TIMEOUT,
        retention: int = RETENTION,
        job_type: str = "demo.count",
        params_json: str = '{"n":3}',
    ) -> JobKeys:
        job = JobKeys("t1", f"job-{next(_ids)}")
        created = store.create(
            job,
            job_type,
            params_json,
            poll_timeout=poll_timeout,
            retention=retention,
            max_runtime=MAX_RUNTIME,
        )
        assert created.outcome is CreateOutcome.CREATED
        if status == "INITIALIZED":
            return job
        assert store.start(job).run
        if status == "DONE":
            assert store.finish_done(job, '{"answer":42}')
        elif status == "FAILED":
            assert store.fail(job, ErrorCode.CANCELLED_BY_USER, "Cancelled by the user")
        else:
            assert status == "RUNNING", status
        return job

    return make
