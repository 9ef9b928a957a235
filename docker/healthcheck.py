"""The image's HEALTHCHECK: one command that fits each role, told by PID 1.

- ``web`` (gunicorn): ``GET /healthz`` on JOBGATE_PORT answers 200.
- ``flower``: ``GET /healthcheck`` on JOBGATE_FLOWER_PORT answers 200 (Flower
  serves it without auth).
- ``worker``: the worker answers a Celery ping addressed to it by name, over
  the broker (so a wedged main process or a lost broker connection shows).
- ``beat``: nothing to ask; it is healthy while it runs (compose turns the
  check off for it). So is anything else (``jobgate --help``).

Exit 0 healthy, 1 not, as Docker expects. Runs as the image's user, no shell.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request


def role() -> str:
    """PID 1 is the server itself (gunicorn, celery), or an init (compose's
    `init: true`) whose arguments are the `jobgate <role>` command."""
    with open("/proc/1/cmdline", "rb") as handle:
        argv = [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
    if "web" in argv or any(part.endswith("gunicorn") for part in argv):
        return "web"
    for name in ("flower", "beat", "worker"):
        if name in argv:
            return name
    return "unknown"


def http_ok(port_variable: str, default: str, path: str) -> bool:
    url = f"http://127.0.0.1:{os.environ.get(port_variable, default)}{path}"
    try:
        with urllib.request.urlopen(url, timeout=8) as response:
            return bool(response.status == 200)
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return False


def worker_answers() -> bool:
    from workers.celery_app import make_celery  # noqa: PLC0415 - worker role only
    from workers.config import Settings  # noqa: PLC0415

    app = make_celery(Settings.from_env())
    name = f"jobgate@{socket.gethostname()}"
    replies = app.control.ping(destination=[name], timeout=5.0)
    if not replies:
        print(f"{name} did not answer a ping", file=sys.stderr)
    return bool(replies)


def main() -> int:
    which = role()
    if which == "web":
        healthy = http_ok("JOBGATE_PORT", "8000", "/healthz")
    elif which == "flower":
        healthy = http_ok("JOBGATE_FLOWER_PORT", "5555", "/healthcheck")
    elif which == "worker":
        healthy = worker_answers()
    else:
        healthy = True
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
