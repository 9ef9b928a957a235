"""Remake docs/flower-task-running.png: Flower's task page of a running job.

    .venv/bin/pip install playwright   # the Python package only; not a dependency
    apt-get install -y chromium        # Debian's Chromium, /usr/bin/chromium
    .venv/bin/python docs/flower_screenshot.py

Starts a private redis-server, a worker with task events on and ``jobgate
flower``, submits a ``demo.count`` job of 30 s and shoots the task page once
Flower shows it at 30 % or more.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from app.auth import DEFAULT_TENANT  # noqa: E402
from jobgate.redis_server import RedisServer, free_port  # noqa: E402
from tests.integration.conftest import make_test_settings  # noqa: E402
from tests.support.api import submit  # noqa: E402
from tests.support.harness import BIN, Process, start_worker, wait_until  # noqa: E402
from workers.store import JobStore  # noqa: E402

PASSWORD = "shot-" + uuid.uuid4().hex[:8]
PICTURE = ROOT / "docs" / "flower-task-running.png"


def main() -> None:
    logs = Path(tempfile.mkdtemp(prefix="flower-shot-"))
    with RedisServer() as server:
        settings = make_test_settings(
            server.url,
            queue="jobgate",
            task_events=True,
            flower_port=free_port(),
            flower_password=PASSWORD,
        )
        worker = start_worker(settings, JobStore.from_settings(settings), logs, "worker1")
        flower = Process([str(BIN / "jobgate"), "flower"], settings, logs / "flower.log")
        url = f"http://127.0.0.1:{settings.flower_port}"
        auth = ("admin", PASSWORD)
        try:
            job = submit(create_app(settings).test_client(), params={"n": 100, "delay": 0.3})
            task_id = f"{DEFAULT_TENANT}:{job.get_json()['id']}"

            def progressed() -> bool:
                try:
                    answer = requests.get(f"{url}/api/task/info/{task_id}", auth=auth, timeout=5)
                except requests.ConnectionError:
                    return False
                info: dict[str, Any] = answer.json() if answer.ok else {}
                result = str(info.get("result") or "0%")
                return info.get("state") == "PROGRESS" and int(result.partition("%")[0]) >= 30

            wait_until(progressed, 120, "Flower to show the job at 30 %", step=0.5)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=["--no-sandbox"]
                )
                page = browser.new_page(
                    http_credentials={"username": auth[0], "password": auth[1]},
                    viewport={"width": 1280, "height": 900},
                )
                page.goto(f"{url}/task/{task_id}")
                page.wait_for_timeout(1500)
                page.screenshot(path=str(PICTURE), full_page=True)
                browser.close()
        finally:
            flower.stop()
            worker.stop()
    print(PICTURE)


if __name__ == "__main__":
    main()
