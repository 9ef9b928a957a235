"""What ``jobgate worker`` runs: the Celery command line, without exec'ing it."""

from __future__ import annotations

import pytest

from jobgate import cli
from workers.celery_app import longest_hard_limit, warn_about_consumer_timeout
from workers.config import Settings
from workers.registry import job


class Exec(Exception):
    """Raised by the stand-in for ``os.execv``: carries the argv."""


def worker_argv(monkeypatch: pytest.MonkeyPatch, *args: str) -> list[str]:
    def fake_exec(argv: list[str]) -> None:
        raise Exec(argv)

    monkeypatch.setattr(cli, "_exec", fake_exec)
    with pytest.raises(Exec) as raised:
        cli.main(["worker", *args])
    argv: list[str] = raised.value.args[0]
    return argv


def test_the_worker_runs_without_gossip_and_mingle_but_keeps_heartbeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = worker_argv(monkeypatch)
    assert "--without-gossip" in argv
    assert "--without-mingle" in argv
    assert "--without-heartbeat" not in argv  # Flower shows workers from heartbeats
    assert argv[argv.index("--hostname") + 1] == "jobgate@%h"


def test_the_worker_name_sets_the_celery_node_name(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = worker_argv(monkeypatch, "--name", "jobs-2")
    assert argv[argv.index("--hostname") + 1] == "jobs-2@%h"


def test_queues_chooses_the_declared_queues_by_name_and_the_sweeps_always(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBGATE_QUEUE", "jg")
    monkeypatch.setenv("JOBGATE_JOB_MODULES", "tests.support.jobs")  # declares "reports"

    chosen = worker_argv(monkeypatch, "--queues", "reports, default")
    every = worker_argv(monkeypatch)
    sweep = worker_argv(monkeypatch, "--sweep-only")

    assert chosen[chosen.index("--queues") + 1] == "jg.reports,jg,jg.control"
    assert every[every.index("--queues") + 1] == "jg,jg.reports,jg.control"
    assert sweep[sweep.index("--queues") + 1] == "jg.control"


@pytest.mark.parametrize(
    ("queue", "priority", "priorities"),
    [
        ("control", 4, (0, 9)),
        ("a b", 4, (0, 9)),
        ("", 7, (0, 5)),
        ("", 4, (5, 3)),
        ("", 4, (0, 10)),
    ],
)
def test_a_type_with_a_bad_queue_or_priority_is_refused(
    queue: str, priority: int, priorities: tuple[int, int]
) -> None:
    with pytest.raises(ValueError, match=r"bad queue|priorit"):
        job("test.bad", queue=queue, priority=priority, priorities=priorities)


def test_a_worker_on_rabbitmq_warns_when_a_job_may_outlast_the_consumer_timeout() -> None:
    amqp = "amqp://guest:guest@127.0.0.1:5672/x"
    long_jobs = Settings.from_env({}, broker_url=amqp, max_runtime=14400)
    short_jobs = Settings.from_env({}, broker_url=amqp, max_runtime=600)
    on_redis = Settings.from_env({}, max_runtime=14400)

    warning = warn_about_consumer_timeout(long_jobs)
    assert warning is not None
    assert str(longest_hard_limit(long_jobs) * 1000) in warning  # the value to set, in ms
    assert warn_about_consumer_timeout(short_jobs) is None
    assert warn_about_consumer_timeout(on_redis) is None
