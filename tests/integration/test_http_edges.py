"""What hostile or clumsy HTTP clients meet on real gunicorn (``jobgate web``,
its worker class jobgate/server.py): slow request heads, too many connections,
a 413 on a kept-alive connection, over-long request lines, malformed requests."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
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

THREADS = 8
SLOW_SOCKETS = 520  # 65 x the server's threads
HEADER_TIMEOUT = 20.0  # long enough to measure under attack on a loaded machine


LEFTOVERS: dict[int, bytes] = {}  # per socket: bytes read past the last response


@pytest.fixture(scope="module")
def server(settings: Settings, worker: Process, log_dir: Path) -> Iterator[LiveServer]:
    """One gunicorn worker with 8 threads; no per-client cap (one attacker holds all)."""
    live = LiveServer(
        settings.with_overrides(
            header_timeout=HEADER_TIMEOUT, max_connections_per_client=0, max_body=1024
        ),
        log_dir,
        web_workers=1,
        web_threads=THREADS,
    )
    yield live
    live.stop()


def connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    LEFTOVERS.pop(sock.fileno(), None)  # of an earlier socket with the same number
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole response from a raw socket (Content-Length framed)."""
    data = LEFTOVERS.pop(sock.fileno(), b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    LEFTOVERS[sock.fileno()] = body[length:]
    return status, headers, body[:length]


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed ``sock`` (whatever it answered before)."""
    try:
        sock.setblocking(False)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True  # reset
    finally:
        sock.setblocking(True)


def assert_problem(
    status: int, headers: dict[str, str], body: bytes, expected: int, code: str
) -> None:
    assert status == expected, body
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    problem = json.loads(body)
    assert problem["status"] == expected
    assert problem["code"] == code
    assert problem["type"] == f"urn:jobgate:problem:{code}"
    assert problem["title"] and problem["detail"]


def healthz_ok(server: LiveServer) -> bool:
    try:
        return requests.get(f"{server.url}/healthz", timeout=30).status_code == 200
    except requests.ConnectionError:
        return False


def submit_job(url: str) -> str:
    body: dict[str, Any] = {"type": "demo.count", "params": {"n": 1}, "wait": 0}
    response = requests.post(f"{url}/v1/jobs", json=body, timeout=30)
    assert response.status_code == 202, response.text
    location: str = response.headers["Location"]  # absolute: the status link as given
    assert location.startswith(f"{url}/v1/jobs/")
    return location


# -- slow clients ------------------------------------------------------------


def test_slow_request_heads_hold_no_thread_and_are_closed_after_the_header_timeout(
    server: LiveServer,
) -> None:
    location = submit_job(server.url)
    slow: list[socket.socket] = []
    # Half of them first finish a request, so their next (slow) head arrives
    # on a kept-alive connection: the same rule must hold there.
    for n in range(SLOW_SOCKETS):
        sock = connect(server)
        if n % 2:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _ = read_response(sock)
            assert (status, headers["connection"]) == (200, "keep-alive")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        slow.append(sock)

    stop = threading.Event()

    def trickle() -> None:  # a header line every 2 s on every socket
        n = 0
        while not stop.wait(2):
            n += 1
            for sock in slow:
                with contextlib.suppress(OSError):  # closed by the server by now
                    sock.sendall(f"X-Slow-{n}: y\r\n".encode())

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        stop.wait(3)  # the first header lines have gone out after the request lines
        started = time.monotonic()
        healthz = requests.get(f"{server.url}/healthz", timeout=30)
        healthz_latency = time.monotonic() - started
        started = time.monotonic()
        poll = requests.get(location, timeout=30)
        poll_latency = time.monotonic() - started
        still_open = sum(not closed_by_server(sock) for sock in slow)

        assert healthz.status_code == 200
        assert poll.status_code in (200, 202)
        # Generous bounds (a loaded machine); without the fix both time out.
        assert healthz_latency < 10, f"/healthz took {healthz_latency:.1f} s under attack"
        assert poll_latency < 10, f"a poll took {poll_latency:.1f} s under attack"
        assert still_open == SLOW_SOCKETS, "measured while every slow socket was still open"

        wait_until(
            lambda: all(closed_by_server(sock) for sock in slow),
            HEADER_TIMEOUT + 60,
            "the server to close every slow socket",
        )
    finally:
        stop.set()
        sender.join(10)
    for sock in slow:
        sock.close()


def test_a_head_that_never_completes_gets_a_408_problem(server: LiveServer) -> None:
    sock = connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

    sock.settimeout(HEADER_TIMEOUT + 60)
    status, headers, body = read_response(sock)

    assert_problem(status, headers, body, 408, "REQUEST_TIMEOUT")
    wait_until(lambda: closed_by_server(sock), 30, "the server to close the connection")
    sock.close()


def test_clients_that_never_close_after_a_closing_answer_stall_nothing(
    server: LiveServer,
) -> None:
    # gunicorn lingers up to 2 s reading each closing connection (RFC 9112
    # section 9.6) in its main loop: 20 such clients stalled it for 29 s.
    lingering = [connect(server) for _ in range(30)]
    for sock in lingering:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
    for sock in lingering:
        assert read_response(sock)[0] == 200

    started = time.monotonic()
    healthz = requests.get(f"{server.url}/healthz", timeout=60)
    latency = time.monotonic() - started

    assert healthz.status_code == 200
    assert latency < 10, f"/healthz took {latency:.1f} s behind connections being closed"
    wait_until(
        lambda: all(closed_by_server(sock) for sock in lingering), 30, "the server to close them"
    )
    for sock in lingering:
        sock.close()


def test_pipelined_requests_are_all_answered_in_order(server: LiveServer) -> None:
    sock = connect(server)
    body = b'{"type": "demo.count", "params": {"n": 1}, "wait": 0}'
    sock.sendall(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
        + b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
    )

    statuses = [read_response(sock)[0] for _ in range(3)]

    assert statuses == [200, 202, 404]
    sock.close()


# -- 413 on a kept-alive connection ---------------------------------------------


def test_a_413_before_the_body_is_read_says_close_and_closes(server: LiveServer) -> None:
    sock = connect(server)
    body = b'{"type": "demo.count", "params": {"n": 1}}'.ljust(3 * 1024 * 1024)
    sock.sendall(
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:1024]
    )

    status, headers, payload = read_response(sock)

    assert status == 413
    assert json.loads(payload)["code"] == "PAYLOAD_TOO_LARGE"
    assert headers["connection"] == "close"
    wait_until(lambda: closed_by_server(sock), 30, "the server to close the connection")
    sock.close()


def test_a_413_for_a_small_body_keeps_the_connection_usable(server: LiveServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = json.dumps({"type": "demo.count", "params": {"pad": "x" * 4096}})

    connection.request("POST", "/v1/jobs", body, {"Content-Type": "application/json"})
    first = connection.getresponse()
    first.read()
    connection.request("GET", "/healthz")
    second = connection.getresponse()

    assert first.status == 413
    assert first.getheader("Connection") == "keep-alive"
    assert second.status == 200
    assert json.loads(second.read()) == {"status": "ok"}
    connection.close()


# -- request lines and heads gunicorn refuses ---------------------------------------


def test_results_for_100_ids_of_64_characters_reach_the_app(server: LiveServer) -> None:
    ids = [f"{n:03d}".ljust(64, "x") for n in range(100)]

    response = requests.get(
        f"{server.url}/v1/jobs/results", params={"ids": ",".join(ids)}, timeout=30
    )

    assert response.status_code == 200, response.text
    assert set(response.json()) == set(ids)
    assert {entry["status"] for entry in response.json().values()} == {"NOT_FOUND"}


LONG_LINE = b"GET /v1/jobs/results?ids=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
BIG_HEADER = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n"
MANY_HEADERS = (
    b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(120)) + b"\r\n"
)


@pytest.mark.parametrize(
    ("head", "status", "code"),
    [
        pytest.param(LONG_LINE, 414, "URI_TOO_LONG", id="request-line-too-long"),
        pytest.param(BIG_HEADER, 431, "HEADERS_TOO_LARGE", id="header-too-large"),
        pytest.param(MANY_HEADERS, 431, "HEADERS_TOO_LARGE", id="too-many-headers"),
        pytest.param(b"NOT A REQUEST LINE\r\nHost: x\r\n\r\n", 400, "BAD_REQUEST", id="bad-line"),
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nBad Name: y\r\n\r\n", 400, "BAD_REQUEST", id="bad-header"
        ),
    ],
)
def test_requests_gunicorn_refuses_get_a_problem_document(
    server: LiveServer, head: bytes, status: int, code: str
) -> None:
    sock = connect(server)
    sock.sendall(head)

    answer = read_response(sock)

    assert_problem(*answer, expected=status, code=code)
    sock.close()


@pytest.mark.parametrize(
    ("start", "status", "code"),
    [
        pytest.param(b"GET /" + b"a" * 9000, 414, "URI_TOO_LONG", id="request-line"),
        pytest.param(
            b"GET / HTTP/1.1\r\n" + b"X-Pad: 1234567\r\n" * 4200,
            431,
            "HEADERS_TOO_LARGE",
            id="head",
        ),
    ],
)
def test_an_unfinished_head_that_can_never_be_accepted_is_refused_at_once(
    server: LiveServer, start: bytes, status: int, code: str
) -> None:
    sock = connect(server)
    sock.sendall(start)  # and nothing more: no waiting for the header timeout (408)

    answer = read_response(sock)

    assert_problem(*answer, expected=status, code=code)
    sock.close()


# -- connections per client ----------------------------------------------------------


@pytest.fixture(scope="module")
def capped_server(settings: Settings, worker: Process, log_dir: Path) -> Iterator[LiveServer]:
    live = LiveServer(
        settings.with_overrides(max_connections_per_client=5), log_dir, web_workers=1, web_threads=4
    )
    yield live
    live.stop()


def test_one_client_address_holds_at_most_its_share_of_connections(
    capped_server: LiveServer,
) -> None:
    held = [connect(capped_server) for _ in range(5)]
    for sock in held:  # each is accepted (and counted) once it was served
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200

    extra = connect(capped_server)
    refused = read_response(extra)

    assert_problem(*refused, expected=503, code="TOO_MANY_CONNECTIONS")
    assert refused[1]["retry-after"] == "1"
    extra.close()
    for sock in held:
        sock.close()
    wait_until(
        lambda: healthz_ok(capped_server), 30, "a new connection to be served once the others close"
    )
