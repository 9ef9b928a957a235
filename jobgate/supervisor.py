"""Run the Procfile's processes and keep them running: what ``jobgate run`` does.

Each process starts in its own process group, its output forwarded line by
line behind its name (``worker.1 | ...``). One that dies is restarted after a
back-off (1 s, doubling to 30 s; back to 1 s once it had stayed up 60 s), with
a log line, while the others keep running: a killed worker does not take the
API down. ``stop()`` ends them all: SIGTERM to every group, SIGKILL to what is
left after a grace period. Honcho stops everything when one process ends,
and no well-kept supervisor library runs in the foreground of a developer's
terminal without a configuration file and a daemon of its own (supervisord,
circus): this loop is a hundred lines, and tested (tests/unit/test_supervisor.py,
tests/integration/test_run_command.py).

Raises ``ValueError`` for a Procfile line it cannot read.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

FIRST_BACKOFF = 1.0
LONGEST_BACKOFF = 30.0
# A process that stayed up this long before dying is restarted after FIRST_BACKOFF again.
STABLE_AFTER = 60.0
# After SIGTERM, how long a process group may take to end before SIGKILL.
STOP_GRACE = 25.0
CHECK_INTERVAL = 0.2

_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


@dataclass(frozen=True)
class Entry:
    """One Procfile line: ``name: command``."""

    name: str
    command: str


def read_procfile(path: Path, only: list[str] | None = None) -> list[Entry]:
    """The entries of a Procfile (``only`` those named, in the file's order)."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _PROCFILE_LINE.match(line.strip())
        if not match:
            raise ValueError(f"{path}:{number}: expected 'name: command', got {line!r}")
        entries.append(Entry(match.group(1), match.group(2)))
    if only:
        unknown = set(only) - {e.name for e in entries}
        if unknown:
            raise ValueError(f"not in {path}: {', '.join(sorted(unknown))}")
        entries = [e for e in entries if e.name in only]
    return entries


def next_backoff(previous: float, uptime: float) -> float:
    """The wait before restarting a process that died after ``uptime`` seconds,
    when the wait before its last start was ``previous`` (0 at the first start)."""
    if previous == 0.0 or uptime >= STABLE_AFTER:
        return FIRST_BACKOFF
    return min(previous * 2, LONGEST_BACKOFF)


@dataclass
class Child:
    entry: Entry
    label: str
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = 0.0  # the wait before the current (or next) start
    restart_at: float | None = None
    readers: list[threading.Thread] = field(default_factory=list)


class Supervisor:
    """Starts the entries, restarts what dies, stops everything on ``stop()``."""

    def __init__(
        self,
        entries: list[Entry],
        env: Mapping[str, str],
        cwd: Path,
        out: IO[str],
        grace: float = STOP_GRACE,
    ) -> None:
        width = max((len(e.name) for e in entries), default=0) + 2
        self.children = [Child(e, f"{e.name}.1".ljust(width)) for e in entries]
        self.env = dict(env)
        self.cwd = cwd
        self.out = out
        self.grace = grace
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._system = "system".ljust(width)

    # -- output ---------------------------------------------------------------

    def say(self, text: str, label: str | None = None) -> None:
        with self._lock:
            self.out.write(f"{label or self._system} | {text}\n")
            self.out.flush()

    def _forward(self, child: Child, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.say(raw.decode(errors="replace").rstrip("\n"), child.label)
        stream.close()

    # -- one process ----------------------------------------------------------

    def _start(self, child: Child) -> None:
        popen = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {child.entry.command}"],
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, out of the terminal's Ctrl-C
        )
        assert popen.stdout is not None
        reader = threading.Thread(target=self._forward, args=(child, popen.stdout), daemon=True)
        reader.start()
        child.popen, child.started_at, child.restart_at = popen, time.monotonic(), None
        child.readers = [reader]
        self.say(f"started with pid {popen.pid}", child.label)

    def _reap(self, child: Child, code: int) -> None:
        """A process died: end what is left of its group, schedule its restart."""
        assert child.popen is not None
        _signal_group(child.popen.pid, signal.SIGKILL)
        uptime = time.monotonic() - child.started_at
        child.backoff = next_backoff(child.backoff, uptime)
        child.restart_at = time.monotonic() + child.backoff
        how = f"signal {-code}" if code < 0 else f"code {code}"
        self.say(
            f"{child.entry.name} exited ({how}) after {uptime:.1f} s; "
            f"restarting in {child.backoff:.0f} s"
        )
        child.popen = None

    # -- all of them ----------------------------------------------------------

    def check(self) -> None:
        """One round: reap the dead, restart the due."""
        for child in self.children:
            if self._stopping.is_set():
                return
            if child.popen is not None:
                code = child.popen.poll()
                if code is not None:
                    self._reap(child, code)
            elif child.restart_at is not None and time.monotonic() >= child.restart_at:
                self._start(child)

    def run(self) -> None:
        """Start everything and keep it running until ``stop()``."""
        for child in self.children:
            self._start(child)
        while not self._stopping.wait(CHECK_INTERVAL):
            self.check()

    def request_stop(self) -> None:
        """From a signal handler: ``run`` returns at its next check."""
        self._stopping.set()

    def stop(self) -> None:
        """SIGTERM to every process group, SIGKILL to what is left after the grace."""
        self._stopping.set()
        running = [c.popen for c in self.children if c.popen is not None]
        for popen in running:
            _signal_group(popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for popen in running:
            try:
                popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"pid {popen.pid} still running after {self.grace:.0f} s: SIGKILL")
        # Whatever a group still holds (a pool process, a grandchild) goes too.
        for popen in running:
            _signal_group(popen.pid, signal.SIGKILL)
            popen.wait()
        for child in self.children:
            for reader in child.readers:
                reader.join(5)
            child.popen = None


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is empty already
        os.killpg(pgid, signum)
