"""A real Jobgate for the client's tests: redis-server, Celery worker, gunicorn.

The client tests get a stack of their own (its own redis-server, queue
``jobgate-client``, results up to 16 MiB for the 100,000-row download, API
keys on), started for this package and stopped when its tests are done.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from jobgate_client import Client

from jobgate.redis_server import RedisServer
from tests.client.support import KEY, PatientLiveServer, RecordingProxy
from tests.integration.conftest import log_dir, make_test_settings
from tests.support.harness import LiveServer, Process, start_worker
from workers.config import Settings
from workers.store import JobStore

__all__ = ["log_dir"]


@pytest.fixture(scope="package")
def stack_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="package")
def stack_settings(stack_redis: RedisServer) -> Settings:
    return make_test_settings(
        stack_redis.url,
        queue="jobgate-client",
        max_result_bytes=16 * 1024 * 1024,
        api_keys={KEY: "acme", "other-key": "globex"},
    )


@pytest.fixture(scope="package")
def stack_worker(stack_settings: Settings, log_dir: Path) -> Iterator[Process]:
    store = JobStore.from_settings(stack_settings)
    process = start_worker(stack_settings, store, log_dir, "jobgate-client")
    yield process
    process.stop()


@pytest.fixture(scope="package")
def server(stack_settings: Settings, stack_worker: Process, log_dir: Path) -> Iterator[LiveServer]:
    live = PatientLiveServer(stack_settings, log_dir)
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[Client]:
    with Client(server.url, api_key=KEY, retry_timeout=20) as api:
        yield api


@pytest.fixture
def proxy(server: LiveServer) -> Iterator[RecordingProxy]:
    with RecordingProxy(server.port) as recording:
        yield recording
