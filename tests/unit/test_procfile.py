"""The default process set (Procfile, started by `make run` / `jobgate run`)."""

from __future__ import annotations

from pathlib import Path

PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


def commands() -> dict[str, str]:
    entries = [line.split(":", 1) for line in PROCFILE.read_text().splitlines() if ":" in line]
    return {name.strip(): command.strip() for name, command in entries}


def test_the_default_process_set_always_has_a_process_for_the_sweep() -> None:
    # Job workers also take sweeps, but not while every job process is busy:
    # a worker that only consumes the sweep's queue always can.
    assert commands()["sweeper"] == "jobgate worker --sweep-only"
    assert commands()["beat"] == "jobgate beat"


def test_the_default_process_set_delivers_webhooks_apart_from_jobs() -> None:
    # Deliveries have a queue and a worker of their own: a slow receiver
    # never holds a job process.
    assert commands()["webhooks"] == "jobgate worker --webhooks --name webhooks"
