"""A ~50 MB CSV result written and read: peak memory of the worker and the API,
and Redis bytes per result byte (README "Large results in chunks").

``python -m bench.large_result`` (needs PostgreSQL on 127.0.0.1:5432, database
``test``; ``--pg URL`` for another). Starts its own redis-server, a worker
(concurrency 1) and ``jobgate web`` (one process), runs a small ``sql.query``
first (the baseline peak: code loaded, a job run), then one whose CSV is
~50 MB, downloads it as csv, ndjson and json, and reads every process's
peak RSS (VmHWM in /proc, which no sampling can miss) and Redis's MEMORY
USAGE of the result's keys.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import requests

from jobgate.redis_server import RedisServer, free_port
from workers.config import Settings, parse_sql_sources

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# 200,000 rows of ~250 bytes of CSV each: ~50 MB.
BIG_SQL = (
    "SELECT i AS id, md5(i::text) AS hash, repeat('x', 200) AS padding, now() AS at "
    "FROM generate_series(1, 200000) i"
)
SMALL_SQL = "SELECT i FROM generate_series(1, 10) i"


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


def peaks(pid: int) -> dict[int, float]:
    return {p: peak_rss_mib(p) for p in [pid, *children(pid)]}


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def run_job(url: str, sql: str) -> dict[str, Any]:
    body: Any = {
        "type": "sql.query",
        "params": {"source": "pg", "sql": sql, "max_rows": 200_000},
        "wait": 0,
        "poll_timeout": 600,
    }
    location = requests.post(f"{url}/v1/jobs", json=body, timeout=30).headers["Location"]
    while True:
        doc: dict[str, Any] = requests.get(f"{location}?wait=10", timeout=30).json()
        if doc["status"] in ("DONE", "FAILED"):
            return doc
        # Polls keep the heartbeat; nothing else.


def download(url: str, fmt: str) -> int:
    size = 0
    with requests.get(f"{url}?format={fmt}", stream=True, timeout=300) as response:
        response.raise_for_status()
        for piece in response.iter_content(256 * 1024):
            size += len(piece)
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="jobgate-large-"))
    with RedisServer() as server:
        port = free_port()
        settings = Settings.from_env(
            {},
            redis_url=server.url,
            queue="large-result",
            port=port,
            web_workers=1,
            web_threads=8,
            worker_concurrency=1,
            sql_sources=parse_sql_sources(f"pg={args.pg}"),
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBGATE_")}
        env.update(settings.to_env(), PYTHONPATH=str(ROOT))
        procs = {
            "worker": subprocess.Popen(
                [str(BIN / "jobgate"), "worker", "--name", "large"],
                env=env,
                stdout=(logs / "worker.log").open("wb"),
                stderr=subprocess.STDOUT,
            ),
            "api": subprocess.Popen(
                [str(BIN / "jobgate"), "web"],
                env=env,
                stdout=(logs / "web.log").open("wb"),
                stderr=subprocess.STDOUT,
            ),
        }
        url = f"http://127.0.0.1:{port}"
        try:
            wait(lambda: _up(url), 60, "the API")
            small = run_job(url, SMALL_SQL)
            assert small["status"] == "DONE", small
            base = {name: peaks(p.pid) for name, p in procs.items()}
            started = time.monotonic()
            doc = run_job(url, BIG_SQL)
            assert doc["status"] == "DONE", doc
            ran = time.monotonic() - started
            after_write = {name: peaks(p.pid) for name, p in procs.items()}
            result_url = f"{url}/v1/jobs/{doc['id']}/result"
            sizes = {}
            for fmt in ("csv", "ndjson", "json"):
                t0 = time.monotonic()
                sizes[fmt] = (download(result_url, fmt), time.monotonic() - t0)
            after_read = {name: peaks(p.pid) for name, p in procs.items()}
            client = redis.Redis.from_url(server.url, decode_responses=True)
            keys = [k for k in client.scan_iter(match=f"*{doc['id']}*")]
            chunk_keys = [k for k in keys if ":result:" in k]
            stored = sum(int(client.strlen(k)) for k in chunk_keys)
            usage = sum(int(client.memory_usage(k, samples=0) or 0) for k in keys)
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                proc.wait(30)
    print(f"job ran {ran:.1f} s; load {os.getloadavg()}")
    for fmt, (size, seconds) in sizes.items():
        print(f"{fmt}: {size / 1e6:.1f} MB in {seconds:.1f} s")
    for name in procs:
        for pid in after_read[name]:
            print(
                f"{name} pid {pid}: peak RSS {base[name].get(pid, 0):.0f} MiB after a small job, "
                f"{after_write[name].get(pid, 0):.0f} MiB after the write, "
                f"{after_read[name][pid]:.0f} MiB after the reads"
            )
    csv_bytes = sizes["csv"][0]
    print(
        f"{len(chunk_keys)} chunks, {stored / 1e6:.1f} MB stored; MEMORY USAGE of the job's keys "
        f"{usage / 1e6:.1f} MB: {usage / stored:.3f} bytes per stored byte, "
        f"{usage / csv_bytes:.3f} per CSV byte"
    )
    print(f"logs: {logs}")


def _up(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


if __name__ == "__main__":
    main()
