"""The client's logic without a server: backoff, retries, poll scheduling, decoding."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest
from jobgate_client import _core as core
from jobgate_client.cli import as_table, parse_params
from jobgate_client.errors import (
    IdConflict,
    JobExpired,
    JobFailed,
    JobgateError,
    JobNotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)


def reply(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> core.Reply:
    return core.Reply(status, headers or {}, body, time.monotonic())


def doc(**fields: Any) -> dict[str, Any]:
    return {"id": "j1", "type": "demo.count", "status": "RUNNING", "progress": 10,
            "message": "Running", "poll_timeout": 60, **fields}  # fmt: skip


def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling() -> None:
    policy = core.Policy(backoff_base=0.5, backoff_cap=4, rng=random.Random(7))

    delays = {attempt: [policy.backoff(attempt, None) for _ in range(500)] for attempt in range(6)}

    for attempt, samples in delays.items():
        ceiling = min(4, 0.5 * 2**attempt)
        assert 0 <= min(samples) < ceiling * 0.1
        assert ceiling * 0.9 < max(samples) <= ceiling


def test_backoff_never_comes_sooner_than_retry_after() -> None:
    policy = core.Policy(backoff_base=0.5, backoff_cap=4, rng=random.Random(7))

    assert min(policy.backoff(0, 5.0) for _ in range(100)) == 5.0


def test_a_transient_answer_is_retried_after_a_sleep_then_returned() -> None:
    policy = core.Policy(retry_timeout=60, rng=random.Random(1))
    request = core.Request("GET", "/v1/job-types")
    flow = core.call(request, policy)

    assert next(flow) is request
    first = flow.send(core.NetworkError("refused"))
    assert isinstance(first, core.Sleep) and first.seconds <= 0.5
    assert flow.send(None) is request
    second = flow.send(reply(503, headers={"Retry-After": "5"}))
    assert isinstance(second, core.Sleep) and second.seconds >= 5
    assert flow.send(None) is request
    with pytest.raises(StopIteration) as done:
        flow.send(reply(200, b"{}"))
    assert done.value.value.status == 200


def test_the_retries_stop_at_the_deadline_with_unavailable() -> None:
    flow = core.call(core.Request("GET", "/x"), core.Policy(retry_timeout=0))
    next(flow)

    with pytest.raises(Unavailable, match="refused"):
        flow.send(core.NetworkError("refused"))


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "MALFORMED_JSON", ValidationFailed),
        (401, "UNAUTHORIZED", Unauthorized),
        (404, "JOB_NOT_FOUND", JobNotFound),
        (406, "NOT_ACCEPTABLE", ValidationFailed),
        (409, "ID_CONFLICT", IdConflict),
        (410, "JOB_EXPIRED", JobExpired),
        (422, "VALIDATION_ERROR", ValidationFailed),
        (429, "TOO_MANY_JOBS", RateLimited),
        (503, "BACKEND_UNAVAILABLE", Unavailable),
        (405, "METHOD_NOT_ALLOWED", JobgateError),
    ],
)
def test_each_problem_maps_to_its_exception(status: int, code: str, kind: type) -> None:
    body = f'{{"status": {status}, "code": "{code}", "detail": "no"}}'.encode()

    error = core.problem_error(reply(status, body))

    assert type(error) is kind
    assert (error.status, error.code, error.detail) == (status, code, "no")


def test_a_job_failed_problem_carries_the_jobs_error() -> None:
    body = (
        b'{"code": "JOB_FAILED", "error": {"code": "TIMED_OUT", "message": "m", "retryable": true}}'
    )

    error = core.problem_error(reply(400, body), "j1")

    assert isinstance(error, JobFailed)
    assert (error.job_id, error.code, error.message, error.retryable) == (
        "j1",
        "TIMED_OUT",
        "m",
        True,
    )


def state(retry_after: float = 3, **fields: Any) -> core.JobState:
    body = json.dumps(doc(**fields)).encode()
    return core.JobState.from_reply(core.Reply(202, {"Retry-After": str(retry_after)}, body, 100.0))


def test_wait_polls_again_after_retry_after() -> None:
    job = state(retry_after=3)

    assert job.next_poll_at(core.Policy(), follow=False) == 103


def test_a_watcher_polls_soon_after_a_change_at_once_after_a_full_hold() -> None:
    policy = core.Policy(progress_interval=0.5)
    job = state(retry_after=3)

    job.changed, job.held, job.answered_in = True, 30, 0.1
    after_change = job.next_poll_at(policy, follow=True)
    job.changed, job.held, job.answered_in = False, 30, 30
    after_full_hold = job.next_poll_at(policy, follow=True)
    job.changed, job.held, job.answered_in = False, 30, 0.01
    after_refusal = job.next_poll_at(policy, follow=True)

    assert (after_change, after_full_hold, after_refusal) == (100.5, 100, 103)


def test_no_poll_is_planned_past_half_the_poll_timeout() -> None:
    job = state(retry_after=10, poll_timeout=10)

    assert job.next_poll_at(core.Policy(), follow=False) == 105
    assert job.hold(core.Policy(), None) == 5
    assert job.hold(core.Policy(), 2.5) == 2.5
    assert state(poll_timeout=0).hold(core.Policy(), None) == 30


def test_ndjson_lines_split_across_chunks_are_decoded_whole() -> None:
    decoder = core.LineDecoder()

    rows = decoder.feed(b'{"a": 1}\n{"a"') + decoder.feed(b": 2}\n\n") + decoder.feed(b'{"a": 3}')

    assert rows + decoder.close() == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_new_ids_are_ulids_that_sort_by_time() -> None:
    first = core.new_id()
    time.sleep(0.002)
    second = core.new_id()

    assert len(first) == 26 and set(first) <= set(core._CROCKFORD)
    assert first < second


def test_cli_values_are_json_when_they_parse() -> None:
    params = parse_params(["n=5", "delay=0.05", "name=abc", "flag=true", "list=[1,2]", "e="])

    assert params == {"n": 5, "delay": 0.05, "name": "abc", "flag": True, "list": [1, 2], "e": ""}


def test_both_tabular_shapes_become_a_table() -> None:
    assert as_table({"columns": ["a"], "rows": [[1]]}) == (["a"], [[1]])
    assert as_table([{"a": 1}, {"b": 2}]) == (["a", "b"], [[1, None], [None, 2]])
    assert as_table({"hits": 3}) is None


def test_a_submit_sends_only_the_options_given_priority_included() -> None:
    plain = core.submit_request("demo.count", {"n": 1}, "id-1", None, None, None)
    urgent = core.submit_request("demo.count", {"n": 1}, "id-2", 0, None, None, priority=9)

    assert plain.body == {"type": "demo.count", "params": {"n": 1}, "id": "id-1"}
    assert urgent.body == {
        "type": "demo.count",
        "params": {"n": 1},
        "id": "id-2",
        "wait": 0,
        "priority": 9,
    }
