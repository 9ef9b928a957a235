"""Remake the console's pictures in docs/: the jobs list, a running job, a
finished job, and a phone-sized page in dark mode.

    make install                       # playwright (dev extra) and Debian's chromium
    .venv/bin/python docs/console_screenshots.py

Starts a private redis-server, a worker and gunicorn with an API key, submits
a few ``demo.count`` jobs (one to fail, one long) and shoots the pages in
Debian's Chromium.
"""

from __future__ import annotations

import functools
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobgate.redis_server import RedisServer  # noqa: E402
from tests.integration.conftest import make_test_settings  # noqa: E402
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.support.harness import LiveServer, start_worker, wait_until  # noqa: E402
from workers.store import JobStore  # noqa: E402

KEY = "console-screenshots"
DOCS = ROOT / "docs"


def submit(url: str, **params: Any) -> str:
    answer = requests.post(
        f"{url}/v1/jobs",
        json={"type": "demo.count", "params": params, "wait": 0, "poll_timeout": 0},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    answer.raise_for_status()
    job_id: str = answer.json()["id"]
    return job_id


def status(url: str, job_id: str) -> dict[str, Any]:
    answer = requests.get(
        f"{url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    )
    doc: dict[str, Any] = answer.json()
    return doc


def ended(url: str, job_id: str) -> bool:
    return status(url, job_id)["status"] in ("DONE", "FAILED")


def signed_in_page(browser: Browser, url: str, path: str, **context: Any) -> Page:
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{url}/console")
    page.evaluate(f"sessionStorage.setItem('jobgate.apiKey', {KEY!r})")
    page.goto(url + path)
    page.locator("main h1").wait_for()
    return page


def main() -> None:
    logs = Path(tempfile.mkdtemp(prefix="console-shots-"))
    with RedisServer() as server:
        settings = make_test_settings(server.url, queue="jobgate", api_keys={KEY: "acme"})
        worker = start_worker(settings, JobStore.from_settings(settings), logs, "worker1")
        api = LiveServer(settings, logs)
        try:
            url = api.url
            finished = [submit(url, n=n) for n in (12, 250, 40)]
            failed = submit(url, n=50, fail_at=17)
            for job_id in [*finished, failed]:
                wait_until(functools.partial(ended, url, job_id), 120, "a job to end", step=0.5)
            running = submit(url, n=100, delay=0.4)
            wait_until(lambda: status(url, running)["progress"] >= 35, 120, "35 %", step=0.5)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                wide = {"viewport": {"width": 1280, "height": 800}}

                page = signed_in_page(browser, url, "/console", **wide)
                page.locator("#jobs-table tbody tr").nth(4).wait_for()
                page.screenshot(path=str(DOCS / "console-list.png"))

                page = signed_in_page(browser, url, f"/console/jobs/{running}", **wide)
                page.get_by_role("heading", name="Rows so far", exact=False).wait_for()
                page.screenshot(path=str(DOCS / "console-job-running.png"))

                page = signed_in_page(browser, url, f"/console/jobs/{finished[1]}", **wide)
                page.get_by_role("heading", name="Result (250 rows)").wait_for()
                page.screenshot(path=str(DOCS / "console-job-done.png"))

                phone = {"viewport": {"width": 360, "height": 780}, "color_scheme": "dark"}
                page = signed_in_page(browser, url, f"/console/jobs/{failed}", **phone)
                page.locator("#error-code").wait_for()
                page.screenshot(path=str(DOCS / "console-job-failed-phone-dark.png"))
                browser.close()
            requests.delete(
                f"{url}/v1/jobs/{running}", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
            )
        finally:
            api.stop()
            worker.stop()
    for name in ("list", "job-running", "job-done", "job-failed-phone-dark"):
        print(DOCS / f"console-{name}.png")


if __name__ == "__main__":
    main()
