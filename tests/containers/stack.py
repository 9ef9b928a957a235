"""Podman, the images and a compose project for tests/containers.

Setup installs what is missing (podman, runc, debootstrap; the containers.conf
lines these machines need) and reuses whatever exists: base images made from
Debian are kept between runs, and `make images` rebuilds only changed layers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from jobgate.redis_server import free_port
from tests.support.harness import wait_until
from workers.keys import JobKeys

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker" / "compose.yaml"
PODMAN_COMPOSE = Path(sys.executable).parent / "podman-compose"
CONTAINERS_CONF = Path("/etc/containers/containers.conf")
# runc: crun refuses these machines' hybrid cgroups; no default ulimits: else
# every container fails with `setrlimit RLIMIT_NOFILE: Operation not permitted`.
CONF_LINES = (
    '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n'
)


def run(argv: list[str], timeout: float = 600, check: bool = True, **kwargs: Any) -> str:
    done = run_rc(argv, timeout, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {done.returncode}\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


def run_rc(
    argv: list[str], timeout: float = 600, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def ensure_podman() -> None:
    """Podman with runc; installed here when missing (CI runs as root)."""
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    if missing:
        if os.geteuid() != 0:
            raise AssertionError(f"tests/containers need {missing}: install them (or run as root)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], timeout=900, env=env)
        run(["apt-get", "install", "-y", "-qq", "podman", "runc", "debootstrap"], 900, env=env)
    conf = CONTAINERS_CONF.read_text() if CONTAINERS_CONF.exists() else ""
    if "runtime" not in conf and os.geteuid() == 0:
        CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
        CONTAINERS_CONF.write_text(conf + ("\n" if conf else "") + CONF_LINES)
    if not PODMAN_COMPOSE.exists():
        raise AssertionError(f"{PODMAN_COMPOSE} is missing: `make install` (dev extra)")


@dataclass
class Images:
    """What `make images` built and said: the images compose must use."""

    env: dict[str, str]
    seconds: float


def make_images() -> Images:
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k != "CONTAINER_ENGINE"}
    env["CONTAINER_ENGINE"] = "podman"
    out = run(["make", "--no-print-directory", "images"], timeout=1800, cwd=ROOT, env=env)
    lines = [line for line in out.splitlines() if line.startswith("JOBGATE_") and "=" in line]
    said = dict(line.split("=", 1) for line in lines)
    return Images(env=said, seconds=time.monotonic() - started)


@dataclass
class Stack:
    """One compose project with unique names and free ports; `down -v` at the end."""

    images: Images
    project: str = field(default_factory=lambda: f"jgtest{uuid.uuid4().hex[:10]}")
    api_port: int = field(default_factory=free_port)
    flower_port: int = field(default_factory=free_port)
    api_key: str = field(default_factory=lambda: uuid.uuid4().hex)
    flower_password: str = field(default_factory=lambda: uuid.uuid4().hex)
    redis_password: str = field(default_factory=lambda: uuid.uuid4().hex)
    tenant: str = "acme"
    up_to_first_done: float = 0.0

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBGATE_")}
        env.update(self.images.env)
        env.update(
            REDIS_PASSWORD=self.redis_password,
            JOBGATE_API_KEYS=f"{self.tenant}:{self.api_key}",
            JOBGATE_FLOWER_PASSWORD=self.flower_password,
            JOBGATE_PORT=str(self.api_port),
            JOBGATE_FLOWER_PORT=str(self.flower_port),
            # Two workers, one job at a time each, so that jobs spread over both.
            JOBGATE_WORKERS="2",
            JOBGATE_WORKER_CONCURRENCY="1",
            # A stopped worker hands its job back after 3 s, not 20.
            JOBGATE_SHUTDOWN_GRACE="3",
            JOBGATE_WORKER_STOP_GRACE="30s",
        )
        return env

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        argv = [str(PODMAN_COMPOSE), "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        return run(argv, timeout=timeout, check=check, env=self.env)

    def podman(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        return run(["podman", *args], timeout=timeout, check=check)

    # ---- what podman has of this project ----

    def containers(self, service: str | None = None, running_only: bool = False) -> list[dict]:
        label = f"label=io.podman.compose.project={self.project}"
        argv = ["ps", "--format", "json", "--filter", label]
        if not running_only:
            argv.insert(1, "-a")
        if service:
            argv += ["--filter", f"label=io.podman.compose.service={service}"]
        return list(json.loads(self.podman(*argv) or "[]"))

    def container(self, service: str) -> str:
        (found,) = self.containers(service)
        return str(found["Names"][0])

    def hostname(self, container: str) -> str:
        return self.podman("inspect", "--format", "{{.Config.Hostname}}", container).strip()

    def volumes(self) -> list[str]:
        names = self.podman("volume", "ls", "--format", "{{.Name}}").split()
        return [name for name in names if name.startswith(f"{self.project}_")]

    def networks(self) -> list[str]:
        names = self.podman("network", "ls", "--format", "{{.Name}}").split()
        return [name for name in names if name.startswith(f"{self.project}_")]

    def pods(self) -> list[str]:
        names = self.podman("pod", "ls", "--format", "{{.Name}}").split()
        return [name for name in names if name.endswith(f"_{self.project}")]

    def redis_cli(self, *args: str) -> str:
        return self.podman("exec", self.container("redis"), "redis-cli", *args).strip()

    def record(self, job_id: str) -> dict[str, str]:
        """The job's record as the store keeps it (which worker ran each attempt)."""
        lines = self.redis_cli("HGETALL", JobKeys(self.tenant, job_id).record).splitlines()
        return dict(zip(lines[::2], lines[1::2], strict=True))

    # ---- the API and Flower through the published ports ----

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.flower_port}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def submit(self, n: int, delay: float) -> str:
        body: dict[str, Any] = {"type": "demo.count", "params": {"n": n, "delay": delay}, "wait": 0}
        answer = requests.post(f"{self.url}/v1/jobs", json=body, headers=self.headers(), timeout=30)
        assert answer.status_code in (201, 202), answer.text
        return str(answer.json()["id"])

    def status(self, job_id: str) -> dict[str, Any]:
        answer = requests.get(f"{self.url}/v1/jobs/{job_id}", headers=self.headers(), timeout=30)
        assert answer.status_code in (200, 202), answer.text  # 202 while it runs
        return dict(answer.json())

    def wait_done(self, job_id: str, timeout: float = 240) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            status = self.status(job_id)
            assert status["status"] not in {"FAILED", "CANCELLED", "TIMEOUT"}, status
            return status if status["status"] == "DONE" else None

        return dict(wait_until(done, timeout, f"job {job_id} DONE", step=0.5))

    def ready(self) -> dict[str, Any] | None:
        try:
            answer = requests.get(f"{self.url}/readyz", timeout=10)
        except requests.RequestException:
            return None
        return dict(answer.json()) if answer.status_code == 200 else None
