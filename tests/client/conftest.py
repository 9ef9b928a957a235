"""A real Jobgate for the client's tests: redis-server, Celery worker, gunicorn.

The client tests get a stack of their own (queue ``jobgate-client``, results up
to 16 MiB for the 100,000-row download, API keys on) on the integration
tests' redis-server, so neither suite's jobs run on the other's worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from jobgate_client import Client

from jobgate.redis_server import RedisServer
from tests.client.support import KEY, RecordingProxy
from tests.integration.conftest import log_dir, make_test_settings, redis_server
from tests.support.harness import LiveServer, Process, start_worker
from workers.config import Settings
from workers.store import JobStore

__all__ = ["log_dir", "redis_server"]


class PatientLiveServer(LiveServer):
    """``LiveServer`` that also takes a read timeout of /healthz as "not up yet".

    (The harness's check counts only refused connections; on a loaded machine
    gunicorn may accept before its app is imported, and the 1 s read times out.)
    """

    def _up(self) -> bool:
        try:
            return super()._up()
        except requests.Timeout:
            return False


@pytest.fixture(scope="session")
def stack_settings(redis_server: RedisServer) -> Settings:
    return make_test_settings(
        redis_server.url,
        queue="jobgate-client",
        max_result_bytes=16 * 1024 * 1024,
        api_keys={KEY: "acme", "other-key": "globex"},
    )


@pytest.fixture(scope="session")
def stack_worker(stack_settings: Settings, log_dir: Path) -> Iterator[Process]:
    store = JobStore.from_settings(stack_settings)
    process = start_worker(stack_settings, store, log_dir, "jobgate-client")
    yield process
    process.stop()


@pytest.fixture(scope="session")
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
