"""What the /v1 views do, without Flask: submit, list, several results, wait.

The views parse the request, call one function here, and render what it
returns. Nothing here reads the request or builds a response.

Errors raised: ``ValidationFailed`` (params too deep or too large, numbers
outside 64 bits), ``IdConflict`` (an id taken by another payload, or by a job
that has gone), ``TooManyJobs`` (the tenant's live jobs at their limit); the
store's ``BackendUnavailable``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from app.documents import links, public_error
from workers.config import Settings
from workers.errors import IdConflict, JobExpired, TooManyJobs, ValidationFailed
from workers.keys import JobKeys, valid_id
from workers.queues import job_queue
from workers.registry import JobType
from workers.states import TERMINAL
from workers.store import Created, CreateOutcome, JobRecord, JobStore
from workers.store.values import canonical_params

# params may nest this deep (JSON objects and lists), no deeper.
MAX_PARAMS_DEPTH = 32
# Seconds a client refused for TOO_MANY_JOBS should wait before trying again.
TOO_MANY_RETRY_AFTER = 5
# How many index entries one listing page may examine: each costs a record
# read in Redis (~0.09 ms of its CPU), and 1,000 of them (70 ms) slowed every
# other tenant's polls. A filtered page that reaches it ends short, with a cursor.
LIST_SCAN_LIMIT = 200


# -- submit -------------------------------------------------------------------


def depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (iteratively: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        if children:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def stored_params(params: dict[str, Any], max_bytes: int) -> str:
    """The params as Redis will hold them, within the limits of size and depth."""
    if depth(params) > MAX_PARAMS_DEPTH:
        raise ValidationFailed({"params": [f"Nested deeper than {MAX_PARAMS_DEPTH} levels."]})
    try:
        text = canonical_params(params)
    except orjson.JSONEncodeError:
        raise ValidationFailed({"params": ["Numbers must fit in 64 bits."]}) from None
    if len(text.encode()) > max_bytes:
        raise ValidationFailed(
            {"params": [f"Over {max_bytes} bytes as JSON (JOBGATE_MAX_PARAMS_BYTES)."]}
        )
    return text


def create_job(
    store: JobStore,
    keys: JobKeys,
    job_type: JobType,
    params_json: str,
    *,
    poll_timeout: int,
    retention: int,
    watch: bool,
    request_id: str = "",
    priority: int | None = None,
    callback: dict[str, Any] | None = None,
) -> Created:
    """Create the job; a new one or an idempotent replay comes back, any other
    outcome is the caller's error (IdConflict, TooManyJobs)."""
    settings = store.settings
    created = store.create(
        keys,
        job_type.name,
        params_json,
        poll_timeout=poll_timeout,
        retention=retention,
        max_runtime=job_type.runtime_limit(settings.max_runtime),
        max_attempts=job_type.max_attempts,
        watch=watch,
        request_id=request_id,
        queue=job_queue(settings, job_type.queue),
        priority=job_type.priority if priority is None else priority,
        callback_url=callback["url"] if callback else "",
        callback_events=tuple(dict.fromkeys(callback["events"])) if callback else (),
    )
    if created.outcome is CreateOutcome.CONFLICT:
        raise IdConflict(f"Job {keys.job_id!r} exists with a different type or params.")
    if created.outcome is CreateOutcome.TOMBSTONED:
        raise IdConflict(
            f"Job id {keys.job_id!r} belonged to a job that expired; "
            "it can be reused once its tombstone expires."
        )
    if created.outcome is CreateOutcome.TOO_MANY:
        raise TooManyJobs(
            f"This tenant has {settings.tenant_max_active} live jobs "
            "(JOBGATE_TENANT_MAX_ACTIVE); submit again when one has ended.",
            retry_after=TOO_MANY_RETRY_AFTER,
        )
    return created


# -- waiting --------------------------------------------------------------------


def wait_until_terminal(store: JobStore, keys: JobKeys, after_id: str, seconds: float) -> None:
    """Block (no polling) until the job is terminal or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        event = store.wait_for_event(keys, after_id, remaining)
        if event is None:
            return
        after_id, status = event
        if status in TERMINAL:
            return


# -- listing --------------------------------------------------------------------


def list_jobs(
    store: JobStore,
    tenant: str,
    limit: int,
    cursor: str | None,
    status: str | None,
    job_type: str | None,
) -> tuple[list[JobRecord], str | None]:
    """A page of the tenant's jobs, newest first, keyed by an index score.

    New jobs get higher scores than any cursor, so paging while jobs are added
    has no duplicates and no gaps. With filters, at most LIST_SCAN_LIMIT index
    entries are examined per page; a short page with a cursor means "go on".
    """
    before = float(cursor) if cursor else None
    # Filters skip entries, so read ahead more of the index per round trip.
    batch_size = limit * 4 if (status or job_type) else limit
    found: list[JobRecord] = []
    scanned = 0
    while len(found) < limit and scanned < LIST_SCAN_LIMIT:
        batch_size = min(batch_size, LIST_SCAN_LIMIT - scanned)
        batch = store.list_ids(tenant, before, batch_size)
        records = store.read_many([JobKeys(tenant, i) for i, _ in batch], poll=False, inline_max=0)
        gone = []
        for (job_id, score), record in zip(batch, records, strict=True):
            before, scanned = score, scanned + 1
            if not isinstance(record, JobRecord):
                gone.append(job_id)
            elif status in (None, record.status) and job_type in (None, record.type):
                found.append(record)
                if len(found) == limit:
                    break
        store.forget(tenant, gone)
        if len(batch) < batch_size and len(found) < limit:
            return found, None  # the end of the index
    return found, None if before is None else str(int(before))


# -- several results ------------------------------------------------------------


def several_results(store: JobStore, tenant: str, ids: list[str]) -> dict[str, Any]:
    """Per id, its result entry (each read is a poll); NOT_FOUND, EXPIRED."""
    settings: Settings = store.settings
    valid = [i for i in ids if valid_id(i)]
    records = store.read_many(
        [JobKeys(tenant, i) for i in valid], poll=True, inline_max=settings.inline_result_bytes
    )
    answers: dict[str, Any] = {i: {"status": "NOT_FOUND"} for i in ids}
    for job_id, record in zip(valid, records, strict=True):
        if isinstance(record, JobExpired):
            answers[job_id] = {"status": "EXPIRED"}
        elif isinstance(record, JobRecord):
            answers[job_id] = result_entry(record, settings.expose_tracebacks)
    return answers


def result_entry(record: JobRecord, expose_tracebacks: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"status": record.status.value}
    if not record.status.terminal:
        entry["progress"] = record.progress
    elif record.error is not None:
        entry["error"] = public_error(record.error, expose_tracebacks=expose_tracebacks)
    elif record.result_json is not None:
        entry["result"] = orjson.Fragment(record.result_json)
    else:  # too large to inline
        entry["links"] = {"result": links(record.job_id)["result"]}
    return entry
