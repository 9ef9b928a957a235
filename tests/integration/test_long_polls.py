"""200 long polls held open at once on real gunicorn (gthread, the defaults),
while short requests are still served; a change wakes them all."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.harness import LiveServer, Process, wait_until
from workers.config import Settings

pytestmark = pytest.mark.integration

LONG_POLLS = 200


@pytest.fixture
def default_server(settings: Settings, worker: Process, log_dir: Path) -> Iterator[LiveServer]:
    """gunicorn with the production defaults for workers and threads."""
    defaults = Settings.from_env({})
    server = LiveServer(
        settings, log_dir, web_workers=defaults.web_workers, web_threads=defaults.web_threads
    )
    yield server
    server.stop()


def quiet_running_job(url: str) -> str:
    """A RUNNING job that reports nothing for 20 s: long polls on it just wait."""
    body: dict[str, Any] = {
        "type": "demo.count",
        "params": {"n": 1, "delay": 20, "ignore_cancel": True},
        "wait": 0,
    }
    job = requests.post(f"{url}/v1/jobs", json=body, timeout=5).json()
    location = f"{url}/v1/jobs/{job['id']}"
    wait_until(lambda: requests.get(location, timeout=5).json()["status"] == "RUNNING", 20, "run")
    return location


def test_200_long_polls_wait_while_short_requests_are_served(default_server: LiveServer) -> None:
    url = default_server.url
    location = quiet_running_job(url)

    answers: list[tuple[int, str, float]] = []
    lock = threading.Lock()

    def long_poll() -> None:
        started = time.monotonic()
        response = requests.get(f"{location}?wait=25", timeout=40)
        with lock:
            answers.append(
                (response.status_code, response.json()["status"], time.monotonic() - started)
            )

    polls = [threading.Thread(target=long_poll) for _ in range(LONG_POLLS)]
    for poll in polls:
        poll.start()
    time.sleep(2)  # let them all arrive and block
    assert answers == [], "nothing has changed yet, so every long poll is still waiting"

    started = time.monotonic()
    assert requests.get(f"{url}/healthz", timeout=15).status_code == 200
    assert requests.get(location, timeout=15).status_code == 202
    short_latency = time.monotonic() - started

    cancelled_at = time.monotonic()
    assert requests.delete(location, timeout=5).status_code == 200
    for poll in polls:
        poll.join(30)
    woke_within = time.monotonic() - cancelled_at

    # Generous (the machine may be loaded): blocked behind the polls would be 25 s.
    assert short_latency < 10.0, f"short requests waited {short_latency:.2f} s behind long polls"
    assert len(answers) == LONG_POLLS
    assert {(code, status) for code, status, _ in answers} == {(200, "FAILED")}
    assert woke_within < 10, f"the cancel woke every long poll only after {woke_within:.1f} s"


@pytest.fixture
def tiny_server(settings: Settings, worker: Process, log_dir: Path) -> Iterator[LiveServer]:
    """One gunicorn worker with 8 threads: 6 may wait, 2 stay for short requests."""
    server = LiveServer(settings, log_dir, web_workers=1, web_threads=8)
    yield server
    server.stop()


def test_long_polls_never_take_the_last_threads(tiny_server: LiveServer) -> None:
    url = tiny_server.url
    location = quiet_running_job(url)

    answers: list[float] = []
    lock = threading.Lock()

    def long_poll() -> None:
        started = time.monotonic()
        assert requests.get(f"{location}?wait=25", timeout=40).status_code in (200, 202)
        with lock:
            answers.append(time.monotonic() - started)

    polls = [threading.Thread(target=long_poll) for _ in range(12)]
    for poll in polls:
        poll.start()
    wait_until(lambda: len(answers) >= 6, 10, "the polls without a wait slot to answer")
    time.sleep(1)  # the six that hold a slot keep waiting
    answered_at_once = len(answers)
    healthz = requests.get(f"{url}/healthz", timeout=5)
    requests.delete(location, timeout=5)
    for poll in polls:
        poll.join(30)

    assert answered_at_once == 6, "6 of 8 threads may wait; the other polls answer at once"
    assert healthz.status_code == 200
    assert len(answers) == 12
