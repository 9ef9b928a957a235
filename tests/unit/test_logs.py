"""workers/logs.py: what a log line carries, in JSON and in text."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from workers import logs
from workers.config import Settings
from workers.errors import ConfigError


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logs.configure(Settings.from_env({}, log_format="json"), stream=out)
    yield out
    logging.getLogger().removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_has_time_level_logger_and_message(stream: io.StringIO) -> None:
    logging.getLogger("jobgate.test").warning("disk %s full", "/tmp")

    [line] = lines(stream)

    assert line["level"] == "WARNING"
    assert line["logger"] == "jobgate.test"
    assert line["message"] == "disk /tmp full"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", str(line["time"]))


def test_bound_ids_are_on_every_line_of_the_block_and_gone_after(stream: io.StringIO) -> None:
    log = logging.getLogger("jobgate.test")

    with logs.bound(job_id="j1", tenant="acme", type="demo.count", attempt=2, request_id="r-1"):
        log.info("inside")
    log.info("outside")

    inside, outside = lines(stream)
    assert {k: inside[k] for k in logs.CONTEXT_FIELDS} == {
        "job_id": "j1",
        "tenant": "acme",
        "type": "demo.count",
        "attempt": 2,
        "request_id": "r-1",
    }
    assert not set(logs.CONTEXT_FIELDS) & set(outside)


def test_empty_values_are_left_out_and_extra_fields_win(stream: io.StringIO) -> None:
    with logs.bound(request_id="", job_id="j1"):
        logging.getLogger("jobgate.test").info("x", extra={"job_id": "explicit"})

    [line] = lines(stream)
    assert "request_id" not in line
    assert line["job_id"] == "explicit"


def test_an_exception_is_one_line_too(stream: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("jobgate.test").exception("failed")

    [line] = lines(stream)
    assert "ValueError: boom" in str(line["exc_info"])


def test_text_lines_end_with_the_known_ids() -> None:
    record = logging.LogRecord("jobgate.test", logging.INFO, __file__, 1, "started", None, None)
    record.job_id, record.request_id = "j1", "r-1"

    text = logs.TextFormatter().format(record)

    assert text.endswith("INFO jobgate.test: started [request_id=r-1 job_id=j1]")


def test_configuring_twice_keeps_one_jobgate_handler() -> None:
    settings = Settings.from_env({}, log_format="text")
    root = logging.getLogger()

    first = logs.configure(settings)
    second = logs.configure(settings)

    assert first not in root.handlers
    assert [h for h in root.handlers if h.get_name() == "jobgate"] == [second]
    root.removeHandler(second)


@pytest.mark.parametrize(
    "given", ["abc-123", "trace:span.1_x", "A" * 128, "01JDX3Q9W2T6Z8M4N5P7R2S3V4"]
)
def test_a_sane_client_request_id_is_kept(given: str) -> None:
    assert logs.request_id_from(given) == given


@pytest.mark.parametrize("given", [None, "", "A" * 129, "has space", "x\r\ny", "é", "a/b", "{}"])
def test_anything_else_gets_a_new_request_id(given: str | None) -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", logs.request_id_from(given))


def test_the_log_format_is_json_or_text() -> None:
    assert Settings.from_env({"JOBGATE_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match="JOBGATE_LOG_FORMAT"):
        Settings.from_env({"JOBGATE_LOG_FORMAT": "yaml"})
