"""``jg`` as a process against a real Jobgate: each command, ``--json``, exit codes."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobgate_client import Client

from jobgate.redis_server import free_port
from tests.client.support import JG, KEY, jg
from tests.support.harness import LiveServer, wait_until

pytestmark = pytest.mark.integration


def test_jg_submit_prints_the_id_it_was_given(server: LiveServer) -> None:
    chosen = f"cli-{uuid.uuid4().hex}"

    submitted = jg("submit", "demo.count", "n=3", "delay=0.01", "--id", chosen, url=server.url)

    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout == f"{chosen}\n"


def test_jg_submit_json_prints_the_status_document(client: Client, server: LiveServer) -> None:
    submitted = jg("submit", "demo.count", "n=3", "--wait", "10", "--json", url=server.url)

    doc = json.loads(submitted.stdout)
    assert (submitted.returncode, doc["status"]) == (0, "DONE")
    assert doc["result"]["rows"] == [[0, 0], [1, 1], [2, 4]]  # n=3 arrived as the integer 3


def test_jg_run_shows_the_result_as_a_table_and_exits_0(server: LiveServer) -> None:
    ran = jg("run", "demo.count", "n=4", "delay=0.05", url=server.url)

    assert ran.returncode == 0, ran.stderr
    cells = [re.findall(r"\d+", line) for line in ran.stdout.splitlines()]
    assert [c for c in cells if c] == [["0", "0"], ["1", "1"], ["2", "4"], ["3", "9"]]
    assert "step" in ran.stdout and "square" in ran.stdout
    assert "DONE 100%" in ran.stderr  # not a TTY: a line per change


def test_jg_run_json_prints_the_document_with_the_result(server: LiveServer) -> None:
    ran = jg("run", "demo.count", "n=2", "--json", url=server.url)

    doc = json.loads(ran.stdout)
    assert (ran.returncode, doc["status"]) == (0, "DONE")
    assert doc["result"] == {"columns": ["step", "square"], "rows": [[0, 0], [1, 1]]}


def test_jg_run_of_a_failing_job_exits_1(server: LiveServer) -> None:
    ran = jg("run", "demo.count", "n=5", "fail_at=1", url=server.url)

    assert ran.returncode == 1
    assert "JOB_ERROR" in ran.stderr and "failed at step 1" in ran.stderr


def test_jg_watch_prints_a_line_per_change_when_not_a_tty(
    client: Client, server: LiveServer
) -> None:
    job = client.submit("demo.count", {"n": 20, "delay": 0.1}, wait=0)

    watched = jg("watch", job.id, url=server.url)

    percents = [int(p) for p in re.findall(r" (\d+)% ", watched.stderr)]
    assert watched.returncode == 0
    assert percents == sorted(percents) and percents[-1] == 100
    assert len(percents) >= 3


def test_jg_watch_json_prints_a_document_per_change(client: Client, server: LiveServer) -> None:
    job = client.submit("demo.count", {"n": 10, "delay": 0.1}, wait=0)

    watched = jg("watch", job.id, "--json", url=server.url)

    docs = [json.loads(line) for line in watched.stdout.splitlines()]
    assert watched.returncode == 0
    assert docs[-1]["status"] == "DONE" and docs[-1]["id"] == job.id


def test_jg_watch_of_a_failed_job_exits_1(client: Client, server: LiveServer) -> None:
    job = client.submit("demo.count", {"n": 3, "fail_at": 0}, wait=5)

    assert jg("watch", job.id, url=server.url).returncode == 1


def test_jg_status_prints_the_job_and_exits_by_its_status(
    client: Client, server: LiveServer
) -> None:
    done = client.submit("demo.count", {"n": 1}, wait=5)
    failed = client.submit("demo.count", {"n": 3, "fail_at": 0}, wait=5)

    shown = jg("status", done.id, url=server.url)
    as_json = jg("status", done.id, "--json", url=server.url)

    assert shown.returncode == 0 and re.search(r"status\s+DONE", shown.stdout)
    assert json.loads(as_json.stdout)["id"] == done.id
    assert jg("status", failed.id, url=server.url).returncode == 1


def test_jg_result_in_each_format_to_stdout_or_a_file(
    client: Client, server: LiveServer, tmp_path: Path
) -> None:
    job = client.submit("demo.count", {"n": 2}, wait=5)
    target = tmp_path / "r.csv"

    as_json = jg("result", job.id, url=server.url)
    as_ndjson = jg("result", job.id, "--format", "ndjson", url=server.url)
    to_file = jg("result", job.id, "--format", "csv", "-o", str(target), url=server.url)

    assert json.loads(as_json.stdout) == {"columns": ["step", "square"], "rows": [[0, 0], [1, 1]]}
    assert as_ndjson.stdout.splitlines() == ['{"step":0,"square":0}', '{"step":1,"square":1}']
    assert to_file.returncode == 0 and target.read_text() == "step,square\n0,0\n1,1\n"


def test_jg_cancel_cancels_a_live_job_then_deletes_it(client: Client, server: LiveServer) -> None:
    job = client.submit("demo.count", {"n": 100, "delay": 0.2}, wait=0)

    cancelled = jg("cancel", job.id, url=server.url)
    deleted = jg("cancel", job.id, "--json", url=server.url)

    assert cancelled.returncode == 0 and "FAILED" in cancelled.stdout
    assert json.loads(deleted.stdout) == {"id": job.id, "deleted": True}
    assert jg("status", job.id, url=server.url).returncode == 2  # 410 now


def test_jg_ls_lists_the_newest_jobs_first(client: Client, server: LiveServer) -> None:
    ids = [client.submit("demo.count", {"n": 1}, wait=5).id for _ in range(3)]

    listed = jg("ls", "--limit", "2", "--json", url=server.url)
    table = jg("ls", "--status", "DONE", url=server.url)

    assert [doc["id"] for doc in json.loads(listed.stdout)] == ids[:0:-1]
    assert table.returncode == 0 and "DONE" in table.stdout


def test_jg_types_lists_demo_count(server: LiveServer) -> None:
    shown = jg("types", url=server.url)
    as_json = jg("types", "--json", url=server.url)

    assert shown.returncode == 0 and "demo.count" in shown.stdout
    assert "demo.count" in [t["name"] for t in json.loads(as_json.stdout)]


def test_exit_2_for_an_unknown_job_a_refused_request_and_bad_usage(server: LiveServer) -> None:
    assert jg("status", "never-issued", url=server.url).returncode == 2
    assert jg("submit", "demo.count", "n=0", url=server.url).returncode == 2
    assert jg("types", url=server.url, key="wrong").returncode == 2
    assert jg("submit", "demo.count", "n", url=server.url).returncode == 2
    assert jg("frobnicate", url=server.url).returncode == 2


def test_exit_3_when_the_server_cannot_be_reached() -> None:
    nobody = f"http://127.0.0.1:{free_port()}"

    unreachable = jg("status", "x", "--retry-timeout", "2", url=nobody)

    assert unreachable.returncode == 3
    assert "unavailable" in unreachable.stderr


def start_watch(job_id: str, url: str, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBGATE_")}
    env.update(JOBGATE_URL=url, JOBGATE_API_KEY=KEY)
    return subprocess.Popen(
        [JG, "watch", job_id, *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def interrupt(watcher: subprocess.Popen[str], job_id: str) -> int:
    """Ctrl-C once ``jg watch`` is watching (it has shown the job's first line)."""
    assert watcher.stderr is not None
    assert job_id in watcher.stderr.readline()
    watcher.send_signal(signal.SIGINT)
    return watcher.wait(30)


def test_ctrl_c_leaves_the_job_running_and_exits_130(client: Client, server: LiveServer) -> None:
    job = client.submit("demo.count", {"n": 100, "delay": 0.2}, wait=0)
    watcher = start_watch(job.id, server.url)

    code = interrupt(watcher, job.id)

    assert code == 130
    assert client.job(job.id).status == "RUNNING"
    client.job(job.id).cancel()


def test_ctrl_c_with_cancel_on_interrupt_cancels_the_job(
    client: Client, server: LiveServer
) -> None:
    job = client.submit("demo.count", {"n": 100, "delay": 0.2}, wait=0)
    watcher = start_watch(job.id, server.url, "--cancel-on-interrupt")

    code = interrupt(watcher, job.id)

    assert code == 130
    assert (client.job(job.id).error or {}).get("code") == "CANCELLED_BY_USER"


# -- the progress bar, in a real terminal -------------------------------------


@pytest.fixture
def tmux() -> Iterator[list[str]]:
    """A tmux server of this test's own (``-L``), 160 columns wide."""
    command = ["tmux", "-L", f"jg-test-{os.getpid()}"]
    yield command
    subprocess.run([*command, "kill-server"], capture_output=True, check=False)


def test_the_progress_bar_in_a_terminal_shows_a_percent_rising_to_100(
    client: Client, server: LiveServer, tmux: list[str]
) -> None:
    job = client.submit("demo.count", {"n": 25, "delay": 0.2}, wait=0)
    line = f"JOBGATE_URL={server.url} JOBGATE_API_KEY={KEY} {shlex.quote(JG)} watch {job.id}"
    subprocess.run([*tmux, "new-session", "-d", "-s", "jg", "-x", "160", "-y", "20"], check=True)
    subprocess.run([*tmux, "send-keys", "-t", "jg", f"{line}; echo EXIT=$?", "Enter"], check=True)
    seen: list[int] = []
    screens: list[str] = []

    def finished() -> bool:
        screen = subprocess.run(
            [*tmux, "capture-pane", "-p", "-t", "jg"], capture_output=True, text=True, check=True
        ).stdout
        screens.append(screen)
        bars = [row for row in screen.splitlines() if job.id not in row and "%" in row]
        seen.extend(int(p) for row in bars[-1:] for p in re.findall(r"(\d+)%", row))
        return re.search(r"EXIT=\d", screen) is not None

    wait_until(finished, 60, "jg watch to end", step=0.2)

    final = screens[-1]
    assert "EXIT=0" in final
    assert seen == sorted(seen) and seen[-1] == 100
    assert len(set(seen)) >= 3, seen
    assert re.search(r"DONE\s.*━.*100%\s+\d:\d\d:\d\d", final), final


def test_jg_submit_priority_reaches_the_api_and_its_bounds_are_the_types(
    server: LiveServer,
) -> None:
    ok = jg("submit", "test.report", "seconds=0", "--priority", "5", "--json", url=server.url)
    refused = jg("submit", "test.report", "seconds=0", "--priority", "6", url=server.url)

    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] in ("INITIALIZED", "RUNNING", "DONE")
    # The same submit with 6, over test.report's bounds (1-5): refused.
    assert refused.returncode != 0
    assert "VALIDATION_ERROR" in refused.stderr
