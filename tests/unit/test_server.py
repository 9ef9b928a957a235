"""jobgate/server.py's pieces that need no server: the command line, problem answers."""

from __future__ import annotations

import argparse
import json
from typing import NoReturn

import pytest

from jobgate import cli
from jobgate.server import LIMIT_REQUEST_LINE, problem_bytes


class Execed(Exception):
    def __init__(self, argv: list[str]) -> None:
        super().__init__(argv)
        self.argv = argv


def web_argv(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The command line ``jobgate web`` would exec."""

    def fake_exec(argv: list[str]) -> NoReturn:
        raise Execed(argv)

    monkeypatch.setattr(cli, "_exec", fake_exec)
    with pytest.raises(Execed) as execed:
        cli.cmd_web(argparse.Namespace())
    return execed.value.argv


def test_the_request_line_limit_fits_100_ids_of_64_characters() -> None:
    ids = ",".join(["x" * 64] * 100).replace(",", "%2C")  # commas as a client may encode them
    line = f"GET /v1/jobs/results?ids={ids} HTTP/1.1"

    assert len(line) <= LIMIT_REQUEST_LINE


def test_a_problem_answer_is_complete_and_closes() -> None:
    raw = problem_bytes(414, "URI Too Long", "The request line is too long.")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")

    assert lines[0] == "HTTP/1.1 414 URI Too Long"
    assert "Connection: close" in lines
    assert "Content-Type: application/problem+json" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert json.loads(body) == {
        "type": "urn:jobgate:problem:URI_TOO_LONG",
        "title": "URI Too Long",
        "status": 414,
        "detail": "The request line is too long.",
        "code": "URI_TOO_LONG",
    }


def test_jobgate_web_runs_the_jobgate_worker_with_the_raised_line_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = web_argv(monkeypatch)

    assert argv[argv.index("--worker-class") + 1] == "jobgate.server.JobgateWorker"
    assert argv[argv.index("--limit-request-line") + 1] == str(LIMIT_REQUEST_LINE)
