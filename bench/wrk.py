"""The load generator: ``wrk`` (Debian package), installed when missing and root.

Each run's own CPU use (user + system, from ``wait4``'s rusage: exactly what
``/proc/<pid>/stat`` utime + stime would say at exit) is reported beside its
throughput, and so is the CPU the servers under test used meanwhile, so a
figure limited by the load generator on this 2-core machine shows as such.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.common import BENCH, BenchError, log

LUA = BENCH / "lua"


def ensure_wrk() -> str:
    """The path of ``wrk``; installs the Debian package as root when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BenchError(
            "the load generator wrk is not installed and this bench is not running as root "
            "with apt-get: install it (Debian/Ubuntu: sudo apt-get install -y wrk), then "
            "run make bench again"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log("wrk is missing: apt-get install -y wrk")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=False)
        subprocess.run(install, env=env, check=False)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("apt-get could not install wrk: install it by hand and run again")
    return found


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors, timeouts and non-2xx/3xx answers
    wrk_cpu: float  # CPU seconds wrk itself used
    server_cpu: float  # CPU seconds the measured servers used meanwhile
    # The same, by server ("api", "redis"): their sum is server_cpu.
    server_parts: tuple[tuple[str, float], ...] = ()

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def wrk_cores(self) -> float:
        """wrk's CPU use as a share of one core."""
        return self.wrk_cpu / self.seconds

    @property
    def server_cores(self) -> float:
        return self.server_cpu / self.seconds

    def us_per_request(self, part: str | None = None) -> float:
        """CPU µs per request of the servers (or of one of them, by name)."""
        cpu = self.server_cpu if part is None else dict(self.server_parts).get(part, 0.0)
        return cpu / max(1, self.requests) * 1e6


def run_wrk(
    url: str,
    script: str,
    *,
    env: dict[str, str] | None = None,
    connections: int = 50,
    threads: int = 1,
    seconds: int = 5,
    server_cpu: Callable[[], float] | dict[str, Callable[[], float]] = lambda: 0.0,
) -> WrkResult:
    """``wrk -t threads -c connections -d seconds -s bench/lua/<script> url``.

    ``server_cpu``: the CPU seconds of the servers under test, read before and
    after; a dict of them by name to have each one's share too."""
    parts = server_cpu if isinstance(server_cpu, dict) else {"servers": server_cpu}
    argv = [
        ensure_wrk(),
        "--threads", str(threads),
        "--connections", str(connections),
        "--duration", f"{seconds}s",
        "--timeout", "10s",
        "--script", str(LUA / script),
        url,
    ]  # fmt: skip
    child_env = {**os.environ, "BENCH_LUA_DIR": str(LUA), **(env or {})}
    cpu_before = {name: read() for name, read in parts.items()}
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 reaps the child and hands over its rusage; read the pipes first
    # (wrk prints a few hundred bytes, so they never fill).
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read().decode(errors="replace")
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    cpu_used = tuple((name, read() - cpu_before[name]) for name, read in parts.items())
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {err or out}")
    line = next((x for x in out.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise BenchError(f"wrk printed no summary:\n{out}\n{err}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    errors = sum(
        int(data[k])
        for k in ("connect_errors", "read_errors", "write_errors", "bad_status", "timeouts")
    )
    duration = int(data["duration_us"]) / 1e6 or elapsed
    return WrkResult(
        requests=int(data["requests"]),
        seconds=duration,
        p50_ms=int(data["p50_us"]) / 1000,
        p99_ms=int(data["p99_us"]) / 1000,
        errors=errors,
        wrk_cpu=usage.ru_utime + usage.ru_stime,
        server_cpu=sum(used for _, used in cpu_used),
        server_parts=cpu_used,
    )
