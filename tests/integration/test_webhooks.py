"""Completion callbacks end to end: a real API (gunicorn), job worker, webhook
worker (``jobgate worker --webhooks``), beat, Redis, and a real receiver on
loopback (allowed through JOBGATE_WEBHOOK_ALLOW_HOSTS). Signatures are
checked with the Standard Webhooks library from PyPI."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from standardwebhooks import Webhook

from jobgate.redis_server import RedisServer, free_port
from tests.integration.conftest import make_test_settings
from tests.support.harness import BIN, LiveServer, Process, start_beat, start_worker, wait_until
from workers.config import Settings
from workers.store import JobStore

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
RETRY_DELAYS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    def verified(self) -> dict[str, Any]:
        """The payload, once the Standard Webhooks library accepts its signature."""
        payload: dict[str, Any] = Webhook(SECRET).verify(self.body, self.headers)
        return payload


@dataclass
class Receiver:
    """A threaded HTTP server on loopback answering each POST with the next
    status of ``answers`` (then 204), recording every delivery."""

    port: int
    answers: list[int] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.deliveries.append(
                        Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.answers.pop(0) if receiver.answers else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def to(self, path: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.path == path]


@pytest.fixture(scope="module")
def hook_settings() -> Iterator[Settings]:
    # A Redis of its own: the webhook bookkeeping is shared by every
    # deployment on a Redis, and other tests' sweeps would dispatch these
    # deliveries to their own (unconsumed) queues.
    with RedisServer() as server:
        yield make_test_settings(
            server.url,
            queue="jobgate-hooks",
            webhook_secrets=(f"default:{SECRET}",),
            webhook_allow_hosts=("127.0.0.1",),
            webhook_retry_delays=RETRY_DELAYS,
            sweep_interval=0.5,
        )


@pytest.fixture(scope="module")
def hook_store(hook_settings: Settings) -> JobStore:
    return JobStore.from_settings(hook_settings)


def start_webhook_worker(settings: Settings, store: JobStore, log_dir: Path) -> Process:
    """``jobgate worker --webhooks``, exactly as the Procfile runs it."""
    argv = [str(BIN / "jobgate"), "worker", "--webhooks", "--name", "hooks"]
    worker = Process(argv, settings, log_dir / f"hooks-{time.monotonic_ns()}.log")
    wait_until(
        lambda: not worker.alive() or any(w.startswith("hooks@") for w in store.workers_seen()),
        60,
        "the webhook worker to start",
    )
    assert worker.alive(), worker.output()
    return worker


@pytest.fixture(scope="module")
def stack(hook_settings: Settings, hook_store: JobStore, log_dir: Path) -> Iterator[dict[str, Any]]:
    jobs = start_worker(hook_settings, hook_store, log_dir, "hooks-jobs")
    beat = start_beat(hook_settings, log_dir, "hooks-beat")
    hooks = start_webhook_worker(hook_settings, hook_store, log_dir)
    api = LiveServer(hook_settings, log_dir)
    parts: dict[str, Any] = {"api": api, "hooks": hooks}
    yield parts
    api.stop()
    parts["hooks"].stop()
    beat.stop()
    jobs.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver(free_port())
    server.start()
    yield server
    server.stop()


def submit(url: str, **body: Any) -> dict[str, Any]:
    body.setdefault("wait", 0)
    body.setdefault("type", "demo.count")
    response = requests.post(f"{url}/v1/jobs", json=body, timeout=20)
    assert response.status_code in (201, 202), response.text
    doc: dict[str, Any] = response.json()
    return doc


def status(url: str, job_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = requests.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()
    return doc


def test_a_done_event_is_signed_for_the_standard_webhooks_library(
    stack: dict[str, Any], receiver: Receiver
) -> None:
    url = stack["api"].url
    job = submit(url, params={"n": 3}, callback={"url": receiver.url("/done")})
    assert job["poll_timeout"] == 0  # a callback and no poll_timeout: no heartbeat
    assert job["callback"] == {
        "url": receiver.url("/done"),
        "events": ["done", "failed"],
        "state": "pending",
        "attempts": 0,
    }

    wait_until(lambda: receiver.to("/done"), 30, "the done event")
    [delivery] = receiver.to("/done")
    payload = delivery.verified()
    assert payload["type"] == "done"
    assert payload["data"]["id"] == job["id"]
    assert payload["data"]["status"] == "DONE"
    assert payload["data"]["result"]["rows"] == [[0, 0], [1, 1], [2, 4]]
    assert delivery.headers["webhook-id"].startswith("msg_")
    assert delivery.headers["content-type"] == "application/json"

    doc = wait_until(
        lambda: (d := status(url, job["id"]))["callback"]["state"] == "delivered" and d,
        10,
        "the delivered state",
    )
    assert doc["callback"]["attempts"] == 1
    assert doc["callback"]["last_status"] == 204
    time.sleep(1.5)  # a second delivery would come within a sweep or two: none does
    assert len(receiver.to("/done")) == 1


def test_500_twice_then_204_is_three_deliveries_of_one_event_with_one_id(
    stack: dict[str, Any], receiver: Receiver
) -> None:
    url = stack["api"].url
    with receiver.lock:
        receiver.answers[:] = [500, 500]
    job = submit(url, params={"n": 1}, callback={"url": receiver.url("/retry")})

    wait_until(lambda: len(receiver.to("/retry")) >= 3, 60, "three deliveries")
    deliveries = receiver.to("/retry")
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1
    assert len({d.body for d in deliveries}) == 1  # the same event, byte for byte
    for delivery in deliveries:
        assert delivery.verified()["data"]["status"] == "DONE"
    doc = wait_until(
        lambda: (d := status(url, job["id"]))["callback"]["state"] == "delivered" and d,
        10,
        "the delivered state",
    )
    assert (doc["callback"]["attempts"], doc["callback"]["last_status"]) == (3, 204)
    time.sleep(1.5)
    assert len(receiver.to("/retry")) == 3


def test_a_receiver_down_for_a_while_gets_the_event_across_a_worker_restart(
    stack: dict[str, Any], hook_settings: Settings, hook_store: JobStore, log_dir: Path
) -> None:
    url = stack["api"].url
    late = Receiver(free_port())  # nothing listens on its port yet
    job = submit(url, params={"n": 1}, callback={"url": late.url("/late")})

    # A first attempt fails (connection refused); the retry waits in Redis.
    doc = wait_until(
        lambda: (d := status(url, job["id"]))["callback"]["attempts"] >= 1 and d,
        30,
        "a failed attempt",
    )
    assert doc["callback"]["state"] == "pending"
    assert "last_status" not in doc["callback"]
    stack["hooks"].stop()  # the webhook worker goes away, with nothing in memory to lose
    assert hook_store.hooks_pending() >= 1
    time.sleep(2 * RETRY_DELAYS[0])  # retries fall due while no worker runs
    late.start()
    try:
        stack["hooks"] = start_webhook_worker(hook_settings, hook_store, log_dir)
        wait_until(lambda: late.to("/late"), 90, "the event once the receiver is back")
        payload = late.to("/late")[0].verified()
        assert payload["type"] == "done"
        assert payload["data"]["id"] == job["id"]
        doc = wait_until(
            lambda: (d := status(url, job["id"]))["callback"]["state"] == "delivered" and d,
            10,
            "the delivered state",
        )
        assert doc["callback"]["attempts"] >= 2
    finally:
        late.stop()


def test_a_cancelled_job_sends_failed_with_cancelled_by_user(
    stack: dict[str, Any], receiver: Receiver
) -> None:
    url = stack["api"].url
    job = submit(url, params={"n": 100, "delay": 0.2}, callback={"url": receiver.url("/cancelled")})
    wait_until(lambda: status(url, job["id"])["status"] == "RUNNING", 30, "the job to run")

    assert requests.delete(f"{url}/v1/jobs/{job['id']}", timeout=10).status_code == 200

    wait_until(lambda: receiver.to("/cancelled"), 30, "the failed event")
    payload = receiver.to("/cancelled")[0].verified()
    assert payload["type"] == "failed"
    assert payload["data"]["status"] == "FAILED"
    assert payload["data"]["error"]["code"] == "CANCELLED_BY_USER"


def test_progress_events_rise_then_done(stack: dict[str, Any], receiver: Receiver) -> None:
    url = stack["api"].url
    callback = {"url": receiver.url("/progress"), "events": ["progress", "done"]}
    submit(url, params={"n": 4, "delay": 0.3}, callback=callback)

    wait_until(
        lambda: any(d.verified()["type"] == "done" for d in receiver.to("/progress")),
        30,
        "the done event",
    )
    payloads = [d.verified() for d in receiver.to("/progress")]
    progress = [p["data"]["progress"] for p in payloads if p["type"] == "progress"]
    assert len(progress) >= 2
    assert sorted(progress) == sorted(set(progress))  # one event per percent reached
    assert all(p["data"]["status"] == "RUNNING" for p in payloads if p["type"] == "progress")
    assert len({p["timestamp"] for p in payloads}) == len(payloads)


def test_private_addresses_are_refused_unless_allowed(stack: dict[str, Any]) -> None:
    url = stack["api"].url
    for refused in ("https://localhost/hook", "https://10.0.0.7/hook", "http://192.168.1.1/"):
        response = requests.post(
            f"{url}/v1/jobs",
            json={"type": "demo.count", "params": {"n": 1}, "callback": {"url": refused}},
            timeout=10,
        )
        assert response.status_code == 422, refused
        problem = response.json()
        assert problem["code"] == "VALIDATION_ERROR"
        assert problem["errors"]["callback"]["url"], problem
    response = requests.post(
        f"{url}/v1/jobs",
        json={
            "type": "demo.count",
            "params": {"n": 1},
            "callback": {"url": "http://127.0.0.1:9/allowed", "events": ["sometimes"]},
        },
        timeout=10,
    )
    assert response.status_code == 422
    assert "events" in response.json()["errors"]["callback"]
    # The allowed host itself is accepted (over http, on a loopback address).
    job = submit(url, params={"n": 1}, callback={"url": "http://127.0.0.1:9/allowed"})
    assert job["callback"]["state"] == "pending"


def test_metrics_count_deliveries_by_outcome(stack: dict[str, Any], receiver: Receiver) -> None:
    url = stack["api"].url
    job = submit(url, params={"n": 1}, callback={"url": receiver.url("/metrics")})
    wait_until(lambda: receiver.to("/metrics"), 30, "a delivery")
    wait_until(lambda: status(url, job["id"])["callback"]["state"] == "delivered", 10, "delivered")

    text = requests.get(f"{url}/metrics", timeout=10).text
    delivered = [
        line
        for line in text.splitlines()
        if line.startswith('jobgate_webhook_deliveries_total{outcome="delivered"}')
    ]
    assert delivered and float(delivered[0].split()[-1]) >= 1
    assert 'jobgate_webhook_delivery_seconds_bucket{le="10.0",outcome="delivered"}' in text
