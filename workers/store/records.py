"""A job as the store reads it: JobRecord, its Executions, and Started."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from workers import limits
from workers.keys import JobKeys
from workers.registry import DEFAULT_PRIORITY
from workers.states import Status
from workers.store.scripts import ReadReply, StartReply


def _int_or_none(raw: str | None) -> int | None:
    return int(raw) if raw not in (None, "") else None


def _message(raw: dict[str, str]) -> str:
    """A DONE record keeps no message: it is 'Done in <its run time> seconds'
    (finish, in the prelude)."""
    if "message" in raw:
        return raw["message"]
    if raw.get("status") == Status.DONE.value and raw.get("started") and raw.get("finished"):
        seconds = (int(raw["finished"]) - int(raw["started"])) / 1000
        return f"Done in {seconds:.3f} seconds"
    return ""


def _progress(raw: dict[str, str]) -> int:
    """A DONE record keeps no progress: it is PROGRESS_DONE (finish, in the prelude)."""
    if "progress" in raw:
        return int(raw["progress"])
    return limits.PROGRESS_DONE if raw.get("status") == Status.DONE.value else 0


def _expires_ms(raw: dict[str, str]) -> int | None:
    """When a terminal job's keys expire: its end plus its retention (records
    written before 'expires' was left out carry it)."""
    if raw.get("expires"):
        return int(raw["expires"])
    finished = _int_or_none(raw.get("finished"))
    return None if finished is None else finished + int(raw["retention"]) * 1000


def _callback(raw: dict[str, str]) -> dict[str, Any] | None:
    """The status document's ``callback``, from the record's ``cb*`` fields."""
    if not raw.get("cb"):
        return None
    callback: dict[str, Any] = {
        "url": raw["cb"],
        "events": [e for e in raw.get("cbe", "").split(",") if e],
        "state": raw.get("cbs", "pending"),
        "attempts": int(raw.get("cba", 0)),
    }
    if raw.get("cbh"):
        callback["last_status"] = int(raw["cbh"])
    return callback


@dataclass(frozen=True)
class Execution:
    """One execution of a job, as its record keeps it."""

    attempt: int
    worker: str
    started_ms: int
    ended_ms: int | None = None
    outcome: str | None = None  # DONE, FAILED, or a RunEnd (scripts.py)

    @classmethod
    def all_from(cls, raw: dict[str, str]) -> tuple[Execution, ...]:
        """From the record's ``run:<n>`` ('start[ end outcome]') and ``run:<n>:w`` fields."""
        runs = []
        for attempt in range(1, int(raw.get("attempt", 0)) + 1):
            parts = raw.get(f"run:{attempt}", "").split(" ")
            if not parts[0]:
                continue
            closed = len(parts) == 3
            runs.append(
                cls(
                    attempt=attempt,
                    worker=raw.get(f"run:{attempt}:w", ""),
                    started_ms=int(parts[0]),
                    ended_ms=int(parts[1]) if closed else None,
                    outcome=parts[2] if closed else None,
                )
            )
        return tuple(runs)


@dataclass(frozen=True)
class JobRecord:
    """A job as read from Redis, at Redis's own clock ``now_ms``."""

    keys: JobKeys
    type: str
    params: dict[str, Any]
    status: Status
    progress: int
    message: str
    created_ms: int
    poll_timeout: int
    retention: int
    max_runtime: int
    attempt: int
    now_ms: int
    last_event_id: str = "0-0"
    started_ms: int | None = None
    deadline_ms: int | None = None
    finished_ms: int | None = None
    expires_ms: int | None = None
    error: dict[str, Any] | None = None
    result_bytes: int | None = None
    result_json: str | None = None
    queue_position: int | None = None
    # A live job's: a terminal record keeps neither (nor max_runtime: 0 then).
    order: int = 0
    max_attempts: int = 1
    runs: tuple[Execution, ...] = ()
    # Chunk keys of the partial rows (0: just the partial key) and of the
    # result (0: the result key holds the result itself, not a manifest).
    partial_chunks: int = 0
    result_chunks: int = 0
    # The job cut its result short (sql.query's max_rows, files.search's max_matches).
    truncated: bool = False
    # Its broker queue ('' for a job made before queues had priorities) and priority.
    queue: str = ""
    priority: int = DEFAULT_PRIORITY
    # How many changes of status, progress or message the job has had (its
    # latest SSE event id).
    changes: int = 0
    # The callback (docs/api.md): url, events, state, attempts, last_status.
    callback: dict[str, Any] | None = None

    @property
    def job_id(self) -> str:
        return self.keys.job_id

    @classmethod
    def from_reply(cls, keys: JobKeys, reply: ReadReply) -> JobRecord:
        raw = reply.fields
        error = raw.get("error")
        return cls(
            keys=keys,
            type=raw["type"],
            params=orjson.loads(raw["params"]),
            status=Status(raw["status"]),
            progress=_progress(raw),
            message=_message(raw),
            created_ms=int(raw["created"]),
            poll_timeout=int(raw["poll_timeout"]),
            retention=int(raw["retention"]),
            max_runtime=int(raw.get("max_runtime", 0)),
            attempt=int(raw.get("attempt", 0)),
            now_ms=reply.now_ms,
            last_event_id=reply.last_event_id,
            started_ms=_int_or_none(raw.get("started")),
            deadline_ms=_int_or_none(raw.get("deadline")),
            finished_ms=_int_or_none(raw.get("finished")),
            expires_ms=_expires_ms(raw),
            error=orjson.loads(error) if error else None,
            result_bytes=_int_or_none(raw.get("result_bytes")),
            result_json=reply.result_json,
            queue_position=reply.queue_position,
            order=int(raw.get("order", 0)),
            max_attempts=int(raw.get("max_attempts", 1)),
            runs=Execution.all_from(raw),
            partial_chunks=int(raw.get("pchunks", 0)),
            result_chunks=int(raw.get("result_chunks", 0)),
            truncated=raw.get("truncated") == "1",
            queue=raw.get("queue", ""),
            priority=int(raw.get("priority", DEFAULT_PRIORITY)),
            changes=int(raw.get("ev", 0)),
            callback=_callback(raw),
        )


@dataclass(frozen=True)
class Started:
    """What ``start`` tells the worker: run it, or why not."""

    run: bool
    status: str
    type: str = ""
    params: dict[str, Any] | None = None
    attempt: int = 0
    token: str = ""
    # The X-Request-ID of the submit that created the job ('' if none), for logs.
    request_id: str = ""

    @classmethod
    def from_reply(cls, reply: StartReply, token: str) -> Started:
        if not reply.run:
            return cls(run=False, status=reply.status)
        return cls(
            run=True,
            status=reply.status,
            type=reply.type,
            params=orjson.loads(reply.params_json),
            attempt=reply.attempt,
            token=token,
            request_id=reply.request_id,
        )
