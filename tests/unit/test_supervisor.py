"""jobgate/supervisor.py: the loop behind `jobgate run`, with real child processes."""

from __future__ import annotations

import io
import os
import re
import threading
from pathlib import Path

import pytest

from jobgate.supervisor import (
    FIRST_BACKOFF,
    LONGEST_BACKOFF,
    STABLE_AFTER,
    Entry,
    Supervisor,
    next_backoff,
    read_procfile,
)
from tests.support.harness import wait_until


def test_backoff_starts_at_one_second_and_doubles_to_thirty() -> None:
    waits = [next_backoff(0.0, 0.0)]
    for _ in range(7):
        waits.append(next_backoff(waits[-1], uptime=2.0))

    assert waits == [FIRST_BACKOFF, 2, 4, 8, 16, LONGEST_BACKOFF, LONGEST_BACKOFF, LONGEST_BACKOFF]


def test_backoff_resets_after_a_process_stayed_up_a_minute() -> None:
    assert next_backoff(LONGEST_BACKOFF, uptime=STABLE_AFTER) == FIRST_BACKOFF


def test_procfile_entries_are_read_in_order_and_filtered(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text("# comment\nweb: jobgate web\n\nworker: jobgate worker --name x\n")

    assert read_procfile(procfile) == [
        Entry("web", "jobgate web"),
        Entry("worker", "jobgate worker --name x"),
    ]
    assert read_procfile(procfile, ["worker"]) == [Entry("worker", "jobgate worker --name x")]
    with pytest.raises(ValueError, match="not in"):
        read_procfile(procfile, ["flower"])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_dying_process_is_restarted_with_backoff_while_the_others_keep_running() -> None:
    out = io.StringIO()
    entries = [Entry("steady", "sleep 600"), Entry("crasher", "sh -c 'echo up; exit 3'")]
    supervisor = Supervisor(entries, dict(os.environ), Path.cwd(), out, grace=10)
    runner = threading.Thread(target=supervisor.run)
    runner.start()
    try:
        wait_until(lambda: "restarting in 2 s" in out.getvalue(), 30, "a second restart")
        steady = supervisor.children[0].popen

        assert steady is not None and alive(steady.pid)
        assert re.search(r"crasher\.1\s* \| up", out.getvalue())
        assert "crasher exited (code 3) after" in out.getvalue()
        assert out.getvalue().count("steady.1  | started with pid") == 1
    finally:
        supervisor.request_stop()
        runner.join(10)
        supervisor.stop()


def test_stop_ends_every_process_group_including_grandchildren(tmp_path: Path) -> None:
    out = io.StringIO()
    pid_file = tmp_path / "grandchild.pid"
    # A grandchild that ignores SIGTERM: only the SIGKILL after the grace ends it.
    stubborn = f"sh -c 'trap \"\" TERM; sleep 600 & echo $! > {pid_file}; wait'"
    supervisor = Supervisor([Entry("stubborn", stubborn)], dict(os.environ), tmp_path, out, grace=2)
    runner = threading.Thread(target=supervisor.run)
    runner.start()
    grandchild = int(
        wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, "pid")
    )

    supervisor.request_stop()
    runner.join(10)
    supervisor.stop()

    wait_until(lambda: not alive(grandchild), 10, "the grandchild to be gone")
