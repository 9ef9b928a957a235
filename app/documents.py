"""The status document (docs/api.md §2) and the advised next poll."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from flask import Response, request

from workers.states import Status
from workers.store import JobRecord

# Polling advice is never longer than this, and at least one second.
MAX_RETRY_AFTER = 10
MIN_RETRY_AFTER = 1
QUEUED_RETRY_AFTER = 2


# A job's times do not change between its polls: each one formatted once per
# process, not on every poll (the two formats were a twentieth of a poll's CPU).
@lru_cache(maxsize=4096)
def iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=4096)
def human(ms: int) -> str:
    """'Mon Nov 23 10:24:15 GMT 2026', the seed's human-readable start."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%a %b %d %H:%M:%S GMT %Y")


# The path of a job's status below the script root: what
# url_for("jobs.Job", job_id=...) builds (tests/unit/test_documents.py pins it),
# without building a URL adapter per request (url_for was a tenth of a poll's
# CPU). An id is only ever [A-Za-z0-9._-] (workers.keys), which needs no quoting.
JOB_PATH = "/v1/jobs/"


def links(job_id: str) -> dict[str, str]:
    own = f"{request.script_root}{JOB_PATH}{job_id}"
    return {"self": own, "result": f"{own}/result"}


def status_document(
    record: JobRecord,
    *,
    expose_tracebacks: bool,
    link: Callable[[str], dict[str, str]] = links,
) -> dict[str, Any]:
    """The job as docs/api.md §2 shows it; ``link`` makes its links (outside a
    request, as the webhook worker builds it: ``plain_links``)."""
    doc: dict[str, Any] = {
        "id": record.job_id,
        "type": record.type,
        "status": record.status.value,
        "progress": record.progress,
        "message": record.message,
        "created_at": iso(record.created_ms),
    }
    if record.status is Status.INITIALIZED and record.queue_position is not None:
        doc["queue_position"] = record.queue_position
        doc["message"] = f"Queued (position {record.queue_position})"
    if record.started_ms is not None:
        doc["started_at"] = iso(record.started_ms)
        doc["started"] = human(record.started_ms)
    if record.attempt:
        doc["attempt"] = record.attempt
    doc["poll_timeout"] = record.poll_timeout
    if record.deadline_ms is not None and not record.status.terminal:
        doc["poll_deadline"] = iso(record.deadline_ms)
    if record.finished_ms is not None:
        doc["finished_at"] = iso(record.finished_ms)
    if record.expires_ms is not None:
        doc["expires_at"] = iso(record.expires_ms)
    if record.truncated:
        doc["truncated"] = True
    if record.result_json is not None and not record.result_chunks:
        # Stored as JSON text: embedded as is, never parsed and encoded again.
        doc["result"] = orjson.Fragment(record.result_json)
    if record.error is not None:
        doc["error"] = public_error(record.error, expose_tracebacks=expose_tracebacks)
    if record.callback is not None:
        doc["callback"] = record.callback
    doc["links"] = link(record.job_id)
    return doc


def plain_links(job_id: str) -> dict[str, str]:
    """The links without a request (no script root): the webhook's document."""
    own = f"/v1/jobs/{job_id}"
    return {"self": own, "result": f"{own}/result"}


def as_of(record: JobRecord, status: str, progress: int, message: str, changes: int) -> JobRecord:
    """The record as it was at an earlier change (an events stream entry, a
    webhook's event): its status, progress and message then, without what
    only came later."""
    return replace(
        record,
        status=Status(status),
        progress=progress,
        message=message,
        changes=changes,
        finished_ms=None,
        expires_ms=None,
        error=None,
        result_json=None,
        result_bytes=None,
        queue_position=None,
    )


def public_error(error: dict[str, Any], *, expose_tracebacks: bool) -> dict[str, Any]:
    details = error.get("details")
    if details and not expose_tracebacks and "traceback" in details:
        details = {k: v for k, v in details.items() if k != "traceback"}
        error = {**error, "details": details}
    return error


def retry_after(record: JobRecord) -> int:
    """Seconds until the next poll is worth making.

    From the progress rate: the estimated time left, capped at
    MAX_RETRY_AFTER, never later than half the remaining poll window (so a
    client that follows the advice never times its job out), at least 1 s.
    """
    advice: float = QUEUED_RETRY_AFTER
    if record.status is Status.RUNNING and record.started_ms is not None:
        elapsed = max(0.0, (record.now_ms - record.started_ms) / 1000)
        if record.progress > 0:
            advice = elapsed * (100 - record.progress) / record.progress
        else:
            advice = max(1.0, elapsed)
    advice = min(advice, MAX_RETRY_AFTER)
    if record.deadline_ms is not None:
        advice = min(advice, (record.deadline_ms - record.now_ms) / 1000 / 2)
    return max(MIN_RETRY_AFTER, math.floor(advice))


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(orjson.dumps(body), status=status, mimetype="application/json")
    response.headers.update(headers or {})
    return response
