"""app/service.py: what the /v1 views do, called without Flask, on fakeredis."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import Schema

from app import service
from tests.unit.helpers import MAX_RUNTIME, POLL_TIMEOUT, RETENTION, MakeJob
from workers.config import Settings
from workers.errors import IdConflict, TooManyJobs, ValidationFailed
from workers.keys import JobKeys
from workers.registry import JobType
from workers.store import CreateOutcome, JobStore


def demo_count() -> JobType:
    """A job type as the registry holds one, with its own runtime limit."""
    return JobType(
        name="demo.count",
        func=lambda ctx, **params: None,
        params=Schema,
        max_runtime=MAX_RUNTIME // 2,
        description="",
        tabular=False,
        max_attempts=2,
    )


def submit(store: JobStore, keys: JobKeys, params_json: str = '{"n":3}') -> CreateOutcome:
    created = service.create_job(
        store,
        keys,
        demo_count(),
        params_json,
        poll_timeout=POLL_TIMEOUT,
        retention=RETENTION,
        watch=False,
    )
    return created.outcome


def test_params_nested_too_deep_are_refused() -> None:
    params: dict[str, Any] = {"a": []}
    inner = params["a"]
    for _ in range(service.MAX_PARAMS_DEPTH):
        inner.append([])
        inner = inner[0]

    with pytest.raises(ValidationFailed):
        service.stored_params(params, max_bytes=10_000)


def test_params_over_the_byte_limit_are_refused() -> None:
    with pytest.raises(ValidationFailed):
        service.stored_params({"text": "x" * 100}, max_bytes=50)


def test_stored_params_are_canonical() -> None:
    assert service.stored_params({"b": 1, "a": 2}, max_bytes=100) == '{"a":2,"b":1}'


def test_a_new_job_is_created_and_a_replay_exists(store: JobStore, keys: JobKeys) -> None:
    first = submit(store, keys)

    again = submit(store, keys)

    assert (first, again) == (CreateOutcome.CREATED, CreateOutcome.EXISTS)


def test_the_same_id_with_other_params_is_a_conflict(store: JobStore, keys: JobKeys) -> None:
    submit(store, keys)

    with pytest.raises(IdConflict):
        submit(store, keys, '{"n":4}')


def test_a_tenant_at_its_live_job_limit_is_refused(client: Any, settings: Settings) -> None:
    store = JobStore(client, settings.with_overrides(tenant_max_active=1))
    submit(store, JobKeys("t1", "first"))

    with pytest.raises(TooManyJobs) as refused:
        submit(store, JobKeys("t1", "second"))

    assert refused.value.extra["retry_after"] == service.TOO_MANY_RETRY_AFTER


def test_listing_pages_newest_first_with_a_cursor(store: JobStore, make_job: MakeJob) -> None:
    older, newer = make_job(), make_job()

    page, cursor = service.list_jobs(store, "t1", 1, None, None, None)
    rest, _cursor = service.list_jobs(store, "t1", 1, cursor, None, None)

    assert [r.job_id for r in page] == [newer.job_id]
    assert cursor is not None
    assert [r.job_id for r in rest] == [older.job_id]


def test_listing_filters_by_status(store: JobStore, make_job: MakeJob) -> None:
    done, _queued = make_job("DONE"), make_job()

    page, _cursor = service.list_jobs(store, "t1", 10, None, "DONE", None)

    assert [r.job_id for r in page] == [done.job_id]


def test_several_results_says_which_are_unknown(store: JobStore, make_job: MakeJob) -> None:
    done = make_job("DONE")

    answers = service.several_results(store, "t1", [done.job_id, "nobody", "bad id!"])

    assert answers[done.job_id]["status"] == "DONE"
    assert answers["nobody"] == {"status": "NOT_FOUND"}
    assert answers["bad id!"] == {"status": "NOT_FOUND"}


def test_a_job_takes_its_types_runtime_limit_and_attempts(store: JobStore, keys: JobKeys) -> None:
    submit(store, keys)

    record = store.read(keys, poll=False)

    assert (record.max_runtime, record.max_attempts) == (MAX_RUNTIME // 2, 2)
