"""`jobgate run` (what `make run` starts): everything up, the printed curl works,
and SIGTERM stops every process it started, the embedded Redis included."""

from __future__ import annotations

import os
import re
import signal
import subprocess
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


def test_run_starts_everything_and_stops_everything(tmp_path: Path) -> None:
    api_port, flower_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBGATE_")}
    env.pop("REDIS_URL", None)
    env.update(
        JOBGATE_PORT=str(api_port),
        JOBGATE_FLOWER_PORT=str(flower_port),
        JOBGATE_WORKER_CONCURRENCY="1",
        JOBGATE_FLOWER_PASSWORD="s3cret-for-test",
        PYTHONUNBUFFERED="1",
    )
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        launcher = subprocess.Popen(
            [str(BIN / "jobgate"), "run", "--embedded-redis"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        banner = wait_until(
            lambda: "Ctrl-C stops everything" in log_path.read_text() and log_path.read_text(),
            90,
            "the banner",
            step=0.2,
        )
        redis_line = re.search(r"Redis\s+(redis://\S+)\s+\(embedded", banner)
        curl = re.search(r"curl -si -X POST (\S+) .* -d '(.*)'", banner)
        assert redis_line is not None, banner
        assert curl is not None, banner
        redis_url = redis_line.group(1)
        assert curl.group(1) == f"http://127.0.0.1:{api_port}/v1/jobs"

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
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(60)

    assert processes_in_group(launcher.pid) == []
    assert not answers(redis_url, timeout=5), "the embedded Redis is stopped"
