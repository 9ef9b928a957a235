"""How many event streams one API process holds while polls keep their pace.

``python -m bench.sse_capacity URL 50,100,200,224,240`` against a running API
(one gunicorn process, e.g. ``JOBGATE_WEB_WORKERS=1 jobgate web``) with a
worker: two ``demo.count`` jobs that report progress every second, then for
each count of streams (opened as raw sockets, read by one selector thread)
the polls per second of 4 polling threads over 10 s, against the same with no
stream. A stream that found no free wait slot gets ``retry:`` and ends: those
are counted. The figure is in the README ("Event streams and webhooks").
"""

from __future__ import annotations

import selectors
import socket
import sys
import threading
import time
import urllib.parse
from typing import Any

import requests

POLLERS = 4
SECONDS = 10.0


def submit(url: str) -> str:
    body: dict[str, Any] = {"type": "demo.count", "params": {"n": 900, "delay": 1}, "wait": 0}
    job: str = requests.post(f"{url}/v1/jobs", json=body, timeout=30).json()["id"]
    return job


def polls_per_second(url: str, jobs: list[str]) -> float:
    stop = time.monotonic() + SECONDS
    counts: list[int] = []

    def poll(i: int) -> None:
        session, done = requests.Session(), 0
        while time.monotonic() < stop:
            response = session.get(f"{url}/v1/jobs/{jobs[i % len(jobs)]}", timeout=30)
            response.raise_for_status()
            done += 1
        counts.append(done)

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(POLLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / SECONDS


class Streams:
    """Open streams, read as they come; counts those told to retry."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.selector = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.retried = 0
        threading.Thread(target=self._read, daemon=True).start()

    def open(self, path: str) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=60)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        with self.lock:
            self.sockets.append(sock)
            self.selector.register(sock, selectors.EVENT_READ)

    def _read(self) -> None:
        while True:
            with self.lock:
                ready = self.selector.select(0) if self.sockets else []
            for key, _ in ready:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if b"\nretry:" in data or data.startswith(b"retry:"):
                    self.retried += 1
                if not data:
                    with self.lock:
                        self.selector.unregister(sock)
            time.sleep(0.05)

    def close(self) -> None:
        with self.lock:
            for sock in self.sockets:
                sock.close()


def main(argv: list[str]) -> None:
    url, counts = argv[1], [int(n) for n in argv[2].split(",")]
    parts = urllib.parse.urlsplit(url)
    jobs = [submit(url), submit(url)]
    time.sleep(3)
    streams = Streams(parts.hostname or "127.0.0.1", parts.port or 80)
    try:
        alone = polls_per_second(url, jobs)
        print(f"streams=0 polls/s={alone:.0f}", flush=True)
        opened = 0
        for count in counts:
            while opened < count:
                streams.open(f"/v1/jobs/{jobs[opened % len(jobs)]}/events")
                opened += 1
            time.sleep(3)
            rate = polls_per_second(url, jobs)
            print(
                f"streams={count} polls/s={rate:.0f} ratio={rate / alone:.2f} "
                f"told_to_retry={streams.retried}",
                flush=True,
            )
    finally:
        streams.close()
        for job in jobs:
            requests.delete(f"{url}/v1/jobs/{job}", timeout=30)


if __name__ == "__main__":
    main(sys.argv)
