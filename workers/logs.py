"""How every Jobgate process logs: one JSON object per line, or text.

``configure(settings)`` gives the root logger one handler, in the format of
``JOBGATE_LOG_FORMAT`` (``json``: python-json-logger; ``text``: one readable
line), with a filter that adds what is known about the current request or job
(``request_id``, ``job_id``, ``tenant``, ``type``, ``attempt``). Those come
from a context variable that the API sets per request and the worker per job
(``bound``), so any logger's line carries them, Celery's and gunicorn's too.

Raises nothing; a format other than json/text is refused by ``Settings``.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import IO

from pythonjsonlogger.json import JsonFormatter

from workers.config import Settings

# ---------------------------------------------------------------------------
# What a line may carry beside time, level, logger and message
# ---------------------------------------------------------------------------

CONTEXT_FIELDS = ("request_id", "job_id", "tenant", "type", "attempt")
LOG_FORMATS = ("json", "text")

_context: ContextVar[Mapping[str, object]] = ContextVar(
    "jobgate_log_context", default=MappingProxyType({})
)


def bind(**values: object) -> Token[Mapping[str, object]]:
    """Add ``values`` (empty ones left out) to what this context's lines carry;
    undo with ``unbind(token)``."""
    known = {name: value for name, value in values.items() if value not in (None, "")}
    return _context.set({**_context.get(), **known})


def unbind(token: Token[Mapping[str, object]]) -> None:
    _context.reset(token)


@contextmanager
def bound(**values: object) -> Iterator[None]:
    """``bind`` for the duration of a block."""
    token = bind(**values)
    try:
        yield
    finally:
        unbind(token)


def current(name: str) -> object:
    """One bound value (``None`` when not known here)."""
    return _context.get().get(name)


class ContextFilter(logging.Filter):
    """Puts the bound values on every record that passes (what a record
    already carries through ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


# ---------------------------------------------------------------------------
# Request ids
# ---------------------------------------------------------------------------

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_from(given: str | None) -> str:
    """The client's ``X-Request-ID`` if sane (1-128 of ``[A-Za-z0-9._:-]``),
    else a new one (32 hex digits): nothing a client sends can forge a log
    line or a header."""
    if given and _SANE_REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


# ---------------------------------------------------------------------------
# Formatters and the root handler
# ---------------------------------------------------------------------------


class TextFormatter(logging.Formatter):
    """``time level logger: message [key=value ...]`` for a developer's terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        known = [(name, getattr(record, name, None)) for name in CONTEXT_FIELDS]
        extras = " ".join(f"{name}={value}" for name, value in known if value is not None)
        if not extras:
            return line
        head, _, tail = line.partition("\n")
        return f"{head} [{extras}]" + (f"\n{tail}" if tail else "")


def json_formatter() -> logging.Formatter:
    """time (ISO 8601, UTC), level, logger, message, then every extra field."""
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        timestamp="time",
        rename_fields={"levelname": "level", "name": "logger"},
    )


def make_formatter(log_format: str) -> logging.Formatter:
    return json_formatter() if log_format == "json" else TextFormatter()


def make_handler(log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(ContextFilter())
    handler.set_name("jobgate")
    return handler


def configure(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """The root logger writes through one Jobgate handler at JOBGATE_LOG_LEVEL.

    Replaces a Jobgate handler installed before and leaves any other alone
    (a test runner's capture, say), so calling it again is harmless.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "jobgate"]:
        root.removeHandler(old)
    handler = make_handler(settings.log_format, stream)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # Python's warnings as log lines (in JSON mode, a bare warning would be
    # the one line that does not parse).
    logging.captureWarnings(True)
    return handler
