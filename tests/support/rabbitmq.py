"""A RabbitMQ virtual host of a test's own on the machine's RabbitMQ.

RabbitMQ is shared (127.0.0.1:5672, guest/guest): a test never declares
anything outside its own vhost, made with ``rabbitmqctl`` and deleted with
everything in it at the end, however the test ended.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

RABBITMQ_HOST = os.environ.get("JOBGATE_TEST_RABBITMQ", "127.0.0.1:5672")


def rabbitmqctl(*args: str) -> str:
    binary = shutil.which("rabbitmqctl")
    if binary is None:
        raise RuntimeError("rabbitmqctl is not installed: the RabbitMQ tests need the server")
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
    return done.stdout


@contextmanager
def rabbitmq_vhost(prefix: str = "jobgate-test") -> Iterator[str]:
    """A fresh vhost for guest; yields its AMQP URL; deletes it afterwards."""
    vhost = f"{prefix}-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBITMQ_HOST}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


def queue_arguments(vhost_url: str) -> dict[str, str]:
    """{queue name: its arguments, as rabbitmqctl prints them} in the URL's vhost."""
    vhost = vhost_url.rsplit("/", 1)[1]
    out = rabbitmqctl("list_queues", "-p", vhost, "name", "arguments", "--no-table-headers", "-q")
    found = {}
    for line in out.splitlines():
        name, _, arguments = line.partition("\t")
        found[name.strip()] = arguments.strip()
    return found
