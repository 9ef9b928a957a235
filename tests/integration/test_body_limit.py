"""JOBGATE_MAX_BODY holds however the body is sent: with Content-Length or chunked.

Against real gunicorn, which passes a chunked body to the app as a stream
with no length (``wsgi.input_terminated``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from urllib.parse import urlsplit

import orjson
import pytest
import redis

from tests.support.harness import LiveServer
from workers.config import Settings

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def padded_submit(job_id: str, size: int) -> bytes:
    """A valid submit, padded with spaces (still valid JSON) to exactly ``size`` bytes."""
    body = orjson.dumps({"type": "demo.count", "params": {"n": 1}, "id": job_id, "wait": 0})
    return body + b" " * (size - len(body))


def chunks(data: bytes, size: int = 64 * 1024) -> bytes:
    out = bytearray()
    for start in range(0, len(data), size):
        piece = data[start : start + size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


def post_raw(url: str, headers: dict[str, str], payload: bytes) -> tuple[int, bytes]:
    """POST /v1/jobs on a raw socket; the body is sent from a thread while the
    answer is read, so an early answer is seen even if the rest is refused."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = f"POST /v1/jobs HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}\r\n".encode()

    def send() -> None:
        # The server may stop reading once it has answered.
        with contextlib.suppress(OSError):
            sock.sendall(request + payload)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = bytearray()
    with sock:
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        sender.join(60)
    status_line = bytes(answer).split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), bytes(answer)


def job_keys(redis_client: redis.Redis, job_id: str) -> list[str]:
    return list(redis_client.scan_iter(match=f"*{job_id}*"))


def test_a_chunked_body_at_the_limit_plus_3_mib_more_is_413_and_creates_nothing(
    live_server: LiveServer, settings: Settings, redis_client: redis.Redis
) -> None:
    job_id = "chunked-" + uuid.uuid4().hex
    body = padded_submit(job_id, settings.max_body) + b" " * (3 * MIB)
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}

    status, answer = post_raw(live_server.url, headers, chunks(body))

    assert status == 413, answer[:500]
    assert b"application/problem+json" in answer
    assert job_keys(redis_client, job_id) == []


def test_a_chunked_body_one_byte_over_the_limit_is_413(
    live_server: LiveServer, settings: Settings, redis_client: redis.Redis
) -> None:
    job_id = "chunked-" + uuid.uuid4().hex
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}

    status, _ = post_raw(
        live_server.url, headers, chunks(padded_submit(job_id, settings.max_body + 1))
    )

    assert status == 413
    assert job_keys(redis_client, job_id) == []


def test_the_same_body_with_content_length_is_413_and_creates_nothing(
    live_server: LiveServer, settings: Settings, redis_client: redis.Redis
) -> None:
    job_id = "sized-" + uuid.uuid4().hex
    body = padded_submit(job_id, settings.max_body) + b" " * (3 * MIB)
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}

    status, _ = post_raw(live_server.url, headers, body)

    assert status == 413
    assert job_keys(redis_client, job_id) == []


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_body_of_exactly_the_limit_is_accepted(
    live_server: LiveServer, settings: Settings, redis_client: redis.Redis, chunked: bool
) -> None:
    job_id = "exact-" + uuid.uuid4().hex
    body = padded_submit(job_id, settings.max_body)
    headers = {"Content-Type": "application/json"}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    else:
        headers["Content-Length"] = str(len(body))

    status, _ = post_raw(live_server.url, headers, chunks(body) if chunked else body)

    assert status == 202
    assert job_keys(redis_client, job_id)
