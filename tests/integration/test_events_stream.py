"""GET /v1/jobs/{id}/events on real gunicorn, against a real worker: a live
stream of status documents, resumed exactly with Last-Event-ID, that keeps
an unpolled job alive while it is open."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from tests.support.harness import LiveServer, Process, wait_until
from workers.config import Settings
from workers.keys import JobKeys
from workers.store import JobStore

pytestmark = pytest.mark.integration

KEEPALIVE = 0.5


@pytest.fixture(scope="module")
def sse_server(settings: Settings, worker: Process, log_dir: Path) -> Iterator[LiveServer]:
    server = LiveServer(settings.with_overrides(sse_keepalive=KEEPALIVE), log_dir)
    yield server
    server.stop()


def submit(url: str, **body: Any) -> str:
    body.setdefault("wait", 0)
    response = requests.post(f"{url}/v1/jobs", json=body, timeout=10)
    assert response.status_code in (201, 202), response.text
    job_id: str = response.json()["id"]
    return job_id


def read_events(
    response: requests.Response, stop_after: int | None = None
) -> Iterator[tuple[int, dict[str, Any]] | str]:
    """(id, document) per event, and each comment line as a string."""
    event_id, data = None, None
    for raw in response.iter_lines():
        line = raw.decode()
        if line.startswith(":"):
            yield line
        elif line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            data = orjson.loads(line[6:])
        elif line == "" and data is not None:
            assert event_id is not None
            yield event_id, data
            event_id, data = None, None


def documents(response: requests.Response) -> list[tuple[int, dict[str, Any]]]:
    return [e for e in read_events(response) if not isinstance(e, str)]


def test_a_running_job_streams_rising_progress_and_ends_with_done(sse_server: LiveServer) -> None:
    job = submit(sse_server.url, type="demo.count", params={"n": 20, "delay": 0.15})

    with requests.get(f"{sse_server.url}/v1/jobs/{job}/events", stream=True, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = documents(r)  # the server ends the stream after the terminal event

    ids = [i for i, _ in events]
    docs = [d for _, d in events]
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids  # one per change, no gap
    assert docs[-1]["status"] == "DONE" and docs[-1]["progress"] == 100
    assert docs[-1]["result"]["rows"][19] == [19, 361]
    progress = [d["progress"] for d in docs if d["status"] == "RUNNING"]
    assert len(set(progress)) >= 5, progress  # watched live, not just the end
    assert progress == sorted(progress)
    assert all(d["status"] != "DONE" for d in docs[:-1])


def test_a_reconnect_with_last_event_id_resumes_without_duplicates_or_gaps(
    sse_server: LiveServer,
) -> None:
    job = submit(sse_server.url, type="demo.count", params={"n": 25, "delay": 0.15})
    url = f"{sse_server.url}/v1/jobs/{job}/events"

    first: list[tuple[int, dict[str, Any]]] = []
    with requests.get(url, stream=True, timeout=60) as r:
        for event in read_events(r):
            if isinstance(event, str):
                continue
            first.append(event)
            if event[1]["progress"] >= 20:
                break  # the client goes away mid-job
    # Changes happen while nobody is connected.
    wait_until(
        lambda: (
            requests.get(f"{sse_server.url}/v1/jobs/{job}", timeout=5).json()["progress"]
            >= first[-1][1]["progress"] + 20
        ),
        30,
        "progress while disconnected",
    )
    last = first[-1][0]
    with requests.get(url, headers={"Last-Event-ID": str(last)}, stream=True, timeout=60) as r:
        second = documents(r)

    ids = [i for i, _ in first + second]
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids
    assert second[0][0] == last + 1
    assert second[-1][1]["status"] == "DONE"
    progress = [d["progress"] for _, d in first + second]
    assert progress == sorted(progress)

    # Resuming after the terminal event: 204, which tells EventSource to stop.
    done = requests.get(url, headers={"Last-Event-ID": str(ids[-1])}, timeout=10)
    assert done.status_code == 204


def test_an_open_stream_keeps_an_unpolled_job_alive_and_its_end_lets_it_time_out(
    sse_server: LiveServer,
) -> None:
    job = submit(
        sse_server.url,
        type="demo.count",
        params={"n": 1, "delay": 60, "ignore_cancel": True},
        poll_timeout=2,
    )
    status_url = f"{sse_server.url}/v1/jobs/{job}"

    # A raw socket: the test decides exactly when the client goes away.
    sock = socket.create_connection(("127.0.0.1", sse_server.port), timeout=30)
    sock.sendall(f"GET /v1/jobs/{job}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    received = b""
    opened = time.monotonic()
    while time.monotonic() - opened < 6:  # three poll timeouts without a poll
        received += sock.recv(65536)
    assert b"200 OK" in received.split(b"\r\n")[0]
    assert b": keep-alive" in received
    # Read without renewing: the job is still alive after 3 x poll_timeout.
    listed = requests.get(f"{sse_server.url}/v1/jobs?limit=100", timeout=5).json()["jobs"]
    assert next(j for j in listed if j["id"] == job)["status"] in ("INITIALIZED", "RUNNING")

    sock.close()
    closed = time.monotonic()

    def timed_out() -> dict[str, Any] | None:
        listed = requests.get(f"{sse_server.url}/v1/jobs?limit=100", timeout=5).json()["jobs"]
        doc: dict[str, Any] = next(j for j in listed if j["id"] == job)
        return doc if doc["status"] == "FAILED" else None

    doc = wait_until(timed_out, 30, "the job to time out once the stream closed", step=0.2)
    assert doc["error"]["code"] == "TIMED_OUT"
    # Within a tick (poll_timeout / 3), the poll timeout and a sweep: not kept alive.
    assert time.monotonic() - closed < 25
    requests.delete(status_url, timeout=5)


def test_unknown_and_gone_jobs_answer_before_the_stream(sse_server: LiveServer) -> None:
    missing = requests.get(f"{sse_server.url}/v1/jobs/no-such-job/events", timeout=10)
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/problem+json"

    job = submit(sse_server.url, type="demo.count", params={"n": 1}, wait=10)
    assert requests.delete(f"{sse_server.url}/v1/jobs/{job}", timeout=5).status_code in (200, 204)
    if requests.get(f"{sse_server.url}/v1/jobs/{job}", timeout=5).status_code == 200:
        requests.delete(f"{sse_server.url}/v1/jobs/{job}", timeout=5)
    gone = requests.get(f"{sse_server.url}/v1/jobs/{job}/events", timeout=10)
    assert gone.status_code == 410


def test_a_finished_job_streams_its_one_terminal_event(sse_server: LiveServer) -> None:
    response = requests.post(
        f"{sse_server.url}/v1/jobs",
        json={"type": "demo.count", "params": {"n": 2}, "wait": 20},
        timeout=30,
    )
    job = response.json()["id"]

    with requests.get(f"{sse_server.url}/v1/jobs/{job}/events", stream=True, timeout=30) as r:
        events = documents(r)

    assert [d["status"] for _, d in events] == ["DONE"]


def test_with_no_free_wait_slot_a_stream_sends_what_is_new_and_says_retry(
    app: Flask, api: FlaskClient
) -> None:
    job = api.post(
        "/v1/jobs",
        json={"type": "demo.count", "params": {"n": 100, "delay": 0.2}, "wait": 0},
    ).get_json()["id"]
    slots = app.extensions["jobgate"].wait_slots
    with ExitStack() as stack:
        while stack.enter_context(slots.claim("default")):
            pass  # every slot of this process taken, as by long polls

        response = api.get(f"/v1/jobs/{job}/events")
        text = response.get_data(as_text=True)  # the stream runs as it is read

    assert response.status_code == 200
    assert text.count("\nid: ") + text.startswith("id: ") == 1  # the current document
    assert re.search(r"^retry: \d+$", text, re.MULTILINE)
    api.delete(f"/v1/jobs/{job}")


def test_a_graceful_shutdown_ends_open_streams_with_retry(
    settings: Settings, worker: Process, log_dir: Path, store: JobStore
) -> None:
    server = LiveServer(settings.with_overrides(sse_keepalive=KEEPALIVE), log_dir)
    job = submit(server.url, type="demo.count", params={"n": 100, "delay": 0.3})
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(f"GET /v1/jobs/{job}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = sock.recv(65536)
        assert b"200 OK" in received

        stopping = time.monotonic()
        server.popen.send_signal(signal.SIGTERM)
        while chunk := sock.recv(65536):
            received += chunk
        sock.close()

        assert b"retry: 1000" in received
        assert server.popen.wait(60) == 0
        # Not held for gunicorn's 30 s graceful timeout: a tick or so.
        assert time.monotonic() - stopping < 20
    finally:
        server.stop()
        store.cancel(JobKeys("default", job))


def test_another_tenants_job_is_404_and_no_key_is_401(settings: Settings, worker: Process) -> None:
    keyed = create_app(settings.with_overrides(api_keys={"key-a": "alice", "key-b": "bob"}))
    client = keyed.test_client()
    alice, bob = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}
    job = client.post(
        "/v1/jobs", json={"type": "demo.count", "params": {"n": 1}, "wait": 10}, headers=alice
    ).get_json()["id"]

    assert client.get(f"/v1/jobs/{job}/events", headers=bob).status_code == 404
    assert client.get(f"/v1/jobs/{job}/events").status_code == 401
    own = client.get(f"/v1/jobs/{job}/events", headers=alice)
    assert own.status_code == 200
    assert '"status":"DONE"' in own.get_data(as_text=True)
