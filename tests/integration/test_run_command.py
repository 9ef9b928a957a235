"""`jobgate run` (what `make run` starts): everything up, the printed curl works,
a killed worker is replaced while the API keeps answering, and SIGTERM stops
every process it started, the embedded Redis included."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from jobgate.redis_server import answers, free_port
from tests.support.harness import BIN, ROOT, wait_until

pytestmark = pytest.mark.integration


def processes_in_group(pgid: int) -> list[str]:
    ps = ["ps", "-eo", "pid=,pgid=,args="]
    out = subprocess.run(ps, check=True, capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines()]
    return [row[2] for row in rows if len(row) == 3 and int(row[1]) == pgid]


def started_pids(output: str, name: str | None = None) -> list[int]:
    """The pids the supervisor announced (``worker.1 | started with pid N``)."""
    label = re.escape(name) if name else r"[a-z]+"
    return [int(pid) for pid in re.findall(label + r"\.1\s*\| started with pid (\d+)", output)]


def run_env(api_port: int, flower_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBGATE_")}
    env.pop("REDIS_URL", None)
    env.update(
        JOBGATE_PORT=str(api_port),
        JOBGATE_FLOWER_PORT=str(flower_port),
        JOBGATE_WORKER_CONCURRENCY="1",
        JOBGATE_FLOWER_PASSWORD="s3cret-for-test",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextmanager
def jobgate_run(log_path: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """`jobgate run --embedded-redis`; SIGTERM at the end, then no process it
    started may be left, in any of the process groups it made."""
    api_port, flower_port = free_port(), free_port()
    with log_path.open("wb") as log:
        launcher = subprocess.Popen(
            [str(BIN / "jobgate"), "run", "--embedded-redis", *extra],
            cwd=ROOT,
            env=run_env(api_port, flower_port),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    launcher.api_port = api_port  # type: ignore[attr-defined]
    launcher.flower_port = flower_port  # type: ignore[attr-defined]
    try:
        yield launcher
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(90)
    groups = [launcher.pid, *started_pids(log_path.read_text())]
    assert [processes_in_group(pgid) for pgid in groups] == [[] for _ in groups]


def wait_for_banner(log_path: Path) -> str:
    banner: str = wait_until(
        lambda: "Ctrl-C stops everything" in log_path.read_text() and log_path.read_text(),
        90,
        "the banner",
        step=0.2,
    )
    return banner


def test_run_starts_everything_and_stops_everything(tmp_path: Path) -> None:
    log_path = tmp_path / "run.log"
    with jobgate_run(log_path) as launcher:
        api_port, flower_port = launcher.api_port, launcher.flower_port  # type: ignore[attr-defined]
        banner = wait_for_banner(log_path)
        redis_line = re.search(r"Redis\s+(redis://\S+)\s+\(embedded", banner)
        curl = re.search(r"curl -si -X POST (\S+) .* -d '(.*)'", banner)
        assert redis_line is not None, banner
        assert curl is not None, banner
        redis_url = redis_line.group(1)
        assert curl.group(1) == f"http://127.0.0.1:{api_port}/v1/jobs"
        console = re.search(r"Console\s+(\S+)", banner)
        assert console is not None, banner
        assert console.group(1) == f"http://127.0.0.1:{api_port}/console"
        page = requests.get(console.group(1), timeout=10)
        assert page.status_code == 200
        assert "/console/assets/main.js" in page.text

        response = requests.post(
            curl.group(1),
            data=curl.group(2),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 202
        location = response.headers["Location"]
        assert location.startswith(f"http://127.0.0.1:{api_port}/v1/jobs/")
        doc = wait_until(
            lambda: (
                (d := requests.get(f"{location}?wait=10", timeout=15).json())["status"]
                in ("DONE", "FAILED")
                and d
            ),
            60,
            "the demo job to end",
        )
        assert doc["status"] == "DONE"
        wait_until(
            lambda: "Sending due task jobgate-sweep" in log_path.read_text(), 30, "beat's sweep"
        )
        # The sweep's own process (Procfile `sweeper`): sweeps run even while
        # every job process is busy.
        wait_until(
            lambda: re.search(r"sweeper\.1\s*\|.*\bready\.", log_path.read_text()),
            60,
            "the sweep-only worker",
        )
        flower = f"http://127.0.0.1:{flower_port}/"
        assert requests.get(flower, timeout=5).status_code == 401
        assert requests.get(flower, auth=("admin", "s3cret-for-test"), timeout=5).ok

    assert not answers(redis_url, timeout=5), "the embedded Redis is stopped"


def test_a_killed_worker_is_replaced_while_the_api_keeps_answering(tmp_path: Path) -> None:
    log_path = tmp_path / "run.log"
    with jobgate_run(log_path, "--processes", "web,worker") as launcher:
        api = f"http://127.0.0.1:{launcher.api_port}"  # type: ignore[attr-defined]
        wait_for_banner(log_path)
        wait_until(lambda: "ready." in log_path.read_text(), 60, "the worker to be ready")
        [worker_pid] = started_pids(log_path.read_text(), "worker")
        health_failures: list[str] = []
        polling = threading.Event()

        def poll_health() -> None:
            while not polling.is_set():
                try:
                    status = requests.get(f"{api}/healthz", timeout=10).status_code
                    if status != 200:
                        health_failures.append(str(status))
                except requests.RequestException as exc:
                    health_failures.append(repr(exc))
                polling.wait(0.1)

        poller = threading.Thread(target=poll_health)
        poller.start()
        try:
            os.kill(worker_pid, signal.SIGKILL)
            killed_at = time.monotonic()
            submitted = requests.post(
                f"{api}/v1/jobs",
                json={"type": "demo.count", "params": {"n": 3}, "wait": 0},
                timeout=10,
            )
            location = submitted.headers["Location"]
            wait_until(
                lambda: requests.get(location, timeout=10).json()["status"] == "DONE",
                15,
                "a new worker to run a job within 15 s of the kill",
                step=0.2,
            )
            replaced_after = time.monotonic() - killed_at
        finally:
            polling.set()
            poller.join(30)

        output = log_path.read_text()
        assert "worker exited (signal 9)" in output and "restarting in 1 s" in output
        assert len(started_pids(output, "worker")) == 2
        assert len(started_pids(output, "web")) == 1
        assert health_failures == []
        print(f"job done {replaced_after:.1f} s after the worker was killed")
