"""What the client tests need beside the stack: a recording proxy, ``jg`` as a process."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import requests

from tests.support.harness import LiveServer

KEY = "client-test-key"
JG = str(Path(sys.executable).parent / "jg")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


class PatientLiveServer(LiveServer):
    """``LiveServer`` that also takes a read timeout of /healthz as "not up yet".

    (The harness's check counts only refused connections; on a loaded machine
    gunicorn may accept before its app is imported, and the 1 s read times out.)
    """

    def _up(self) -> bool:
        try:
            return super()._up()
        except requests.Timeout:
            return False


@dataclass(frozen=True)
class Hit:
    """One request as the server side saw it."""

    at: float  # time.monotonic() when it arrived
    method: str
    path: str
    status: int
    retry_after: float | None


class RecordingProxy:
    """An HTTP reverse proxy in front of the live server that records every request.

    It can also misbehave on purpose: ``drop_next_post`` forwards the next POST
    and then closes the client's connection without an answer (the job exists,
    the client never hears of it); ``refuse(status, n, retry_after)`` answers
    the next ``n`` requests itself with that problem.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.hits: list[Hit] = []
        self.drop_next_post = False
        self._refusals: list[tuple[int, float]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def refuse(self, status: int, count: int, retry_after: float) -> None:
        with self._lock:
            self._refusals += [(status, retry_after)] * count

    def requests_to(self, path: str) -> list[Hit]:
        with self._lock:
            return [hit for hit in self.hits if hit.path.split("?")[0] == path]

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self.hits.append(hit)

    def _next_refusal(self) -> tuple[int, float] | None:
        with self._lock:
            return self._refusals.pop(0) if self._refusals else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def do_DELETE(self) -> None:
                self._forward()

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                refusal = proxy._next_refusal()
                if refusal is not None:
                    status, retry_after = refusal
                    proxy._record(Hit(arrived, self.command, self.path, status, retry_after))
                    problem = {"status": status, "code": "RATE_LIMITED", "detail": "refused"}
                    self._answer(status, [("Retry-After", f"{retry_after:g}")], problem)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                advice = response.getheader("Retry-After")
                advised = float(advice) if advice else None
                hit = Hit(arrived, self.command, self.path, response.status, advised)
                proxy._record(hit)
                if self.command == "POST" and proxy.drop_next_post:
                    proxy.drop_next_post = False
                    self.close_connection = True  # no answer: the connection just drops
                    return
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _answer(self, status: int, headers: list[tuple[str, str]], body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/problem+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


def jg(
    *args: str, url: str, key: str | None = KEY, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """``jg ARGS`` as a process (stdout and stderr not a TTY)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBGATE_")}
    env["JOBGATE_URL"] = url
    if key is not None:
        env["JOBGATE_API_KEY"] = key
    return subprocess.run(
        [JG, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
