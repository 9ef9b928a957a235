"""No secret reaches Celery's configuration, worker stats, Flower or the logs.

A real worker and a real ``jobgate flower`` against a redis-server that has a
password; Flower's HTTP API and ``celery inspect`` are read as an operator
(or an attacker with Flower's password) would.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from jobgate.redis_server import RedisServer, free_port
from tests.integration.conftest import make_test_settings
from tests.support.harness import BIN, ROOT, Process, child_env, start_worker, wait_until
from workers.config import Settings
from workers.store import JobStore

pytestmark = pytest.mark.integration

API_KEY = "key-alice-" + uuid.uuid4().hex
REDIS_PASSWORD = "redis-pw-" + uuid.uuid4().hex
FLOWER_PASSWORD = "flower-pw-" + uuid.uuid4().hex
WORKER = "flowersecrets"


def secrets_in(text: str) -> list[str]:
    """Which secret (or a digest of the key) appears in ``text``."""
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    candidates = {
        "api key": API_KEY,
        "key digest": digest[:32],
        "redis password": REDIS_PASSWORD,
        "flower password": FLOWER_PASSWORD,
    }
    return [name for name, value in candidates.items() if value in text]


@pytest.fixture(scope="module")
def secured_settings() -> Iterator[Settings]:
    with RedisServer() as server:
        # Set after start: the server's readiness check pings without a password.
        redis.Redis(port=server.port).config_set("requirepass", REDIS_PASSWORD)
        url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{server.port}/0"
        yield make_test_settings(
            url,
            queue="jobgate-flower-" + uuid.uuid4().hex[:6],
            api_keys={API_KEY: "alice"},
            flower_port=free_port(),
            flower_password=FLOWER_PASSWORD,
        )


@pytest.fixture(scope="module")
def flower(secured_settings: Settings, log_dir: Path) -> Iterator[tuple[str, Process, Process]]:
    store = JobStore.from_settings(secured_settings)
    worker = start_worker(secured_settings, store, log_dir, WORKER)
    flower = Process([str(BIN / "jobgate"), "flower"], secured_settings, log_dir / "flower.log")
    url = f"http://127.0.0.1:{secured_settings.flower_port}"

    def worker_listed() -> bool:
        if not flower.alive():
            raise RuntimeError(f"flower died:\n{flower.output()}")
        try:
            answer = requests.get(
                f"{url}/api/workers?refresh=1", auth=("admin", FLOWER_PASSWORD), timeout=10
            )
        except requests.ConnectionError:
            return False
        return answer.ok and any(name.startswith(WORKER) for name in answer.json())

    try:
        wait_until(worker_listed, 60, "Flower to list the worker", step=0.5)
        yield url, worker, flower
    finally:
        flower.stop()
        worker.stop()


def test_flowers_worker_api_shows_no_key_password_or_digest(
    flower: tuple[str, Process, Process],
) -> None:
    url, _, _ = flower

    answer = requests.get(
        f"{url}/api/workers?refresh=1", auth=("admin", FLOWER_PASSWORD), timeout=30
    )

    assert answer.ok
    workers = answer.json()
    (name,) = [n for n in workers if n.startswith(WORKER)]
    # The inspection really ran: the worker's configuration and stats are there.
    assert workers[name]["conf"]["task_default_queue"].startswith("jobgate-flower-")
    assert "broker" in workers[name]["stats"]
    assert secrets_in(answer.text) == []


def test_flowers_pages_show_no_key_password_or_digest(
    flower: tuple[str, Process, Process],
) -> None:
    url, _, _ = flower
    auth = ("admin", FLOWER_PASSWORD)
    name = next(n for n in requests.get(f"{url}/api/workers", auth=auth, timeout=30).json())

    pages = {
        path: requests.get(f"{url}{path}", auth=auth, timeout=30)
        for path in ("/workers", f"/worker/{name}", "/broker", "/tasks")
    }

    assert {path: page.status_code for path, page in pages.items()} == dict.fromkeys(pages, 200)
    leaks = {path: secrets_in(page.text) for path, page in pages.items()}
    assert leaks == {path: [] for path in pages}


@pytest.mark.parametrize("command", ["conf", "stats"])
def test_celery_inspect_shows_no_key_password_or_digest(
    flower: tuple[str, Process, Process], secured_settings: Settings, command: str
) -> None:
    inspected = subprocess.run(
        [str(BIN / "celery"), "--app", "workers.worker", "inspect", command, "--json"],
        env=child_env(secured_settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    replies = json.loads(inspected.stdout)
    assert any(name.startswith(WORKER) for name in replies)
    assert secrets_in(inspected.stdout + inspected.stderr) == []


def test_worker_and_flower_logs_show_no_key_or_password(
    flower: tuple[str, Process, Process],
) -> None:
    _, worker, flower_process = flower

    assert secrets_in(worker.output()) == []
    assert secrets_in(flower_process.output()) == []
