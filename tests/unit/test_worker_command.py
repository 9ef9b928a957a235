"""What ``jobgate worker`` runs: the Celery command line, without exec'ing it."""

from __future__ import annotations

import pytest

from jobgate import cli


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
