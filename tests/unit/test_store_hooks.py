"""Webhook bookkeeping in the store (fakeredis + lupa): which changes queue a
delivery, what it carries, and how an attempt's outcome settles it."""

from __future__ import annotations

from typing import Any

import orjson

from workers.keys import HOOKS, HOOKS_DUE, JobKeys
from workers.limits import WEBHOOK_CLAIM_MS
from workers.states import CallbackState, ErrorCode
from workers.store import JobStore

URL = "https://hooks.example.com/in"


def job_with_callback(store: JobStore, name: str, *events: str) -> JobKeys:
    keys = JobKeys("t1", name)
    store.create(
        keys,
        "demo.count",
        "{}",
        poll_timeout=0,
        retention=60,
        max_runtime=60,
        callback_url=URL,
        callback_events=events or ("done", "failed"),
    )
    return keys


def queued(client: Any) -> list[dict[str, Any]]:
    return [orjson.loads(v) for v in client.hgetall(HOOKS).values()]


def test_a_job_without_a_callback_queues_nothing(store: JobStore, client: Any) -> None:
    keys = JobKeys("t1", "plain")
    store.create(keys, "demo.count", "{}", poll_timeout=0, retention=60, max_runtime=60)
    token = store.start(keys).token
    store.report(keys, 50, token=token)
    store.finish_done(keys, "[]", token=token)

    assert not client.exists(HOOKS) and not client.exists(HOOKS_DUE)


def test_done_queues_one_delivery_due_now_and_the_record_shows_it_pending(
    store: JobStore, client: Any
) -> None:
    keys = job_with_callback(store, "done")
    token = store.start(keys).token
    store.report(keys, 50, token=token)  # no progress event asked for
    store.finish_done(keys, "[1]", token=token)

    [hook] = queued(client)
    assert (hook["job"], hook["event"], hook["status"], hook["progress"]) == (
        "t1:done",
        "done",
        "DONE",
        100,
    )
    [(hook_id, due)] = client.zrange(HOOKS_DUE, 0, -1, withscores=True)
    assert hook_id.startswith("msg_")
    assert store.claim_hooks() == [hook_id]  # due now
    assert store.claim_hooks() == []  # claimed: not due again for a while
    assert client.zscore(HOOKS_DUE, hook_id) >= due + WEBHOOK_CLAIM_MS
    record = store.read(keys, poll=False)
    assert record.callback == {
        "url": URL,
        "events": ["done", "failed"],
        "state": "pending",
        "attempts": 0,
    }
    assert record.poll_timeout == 0


def test_a_cancel_queues_failed_with_its_error(store: JobStore, client: Any) -> None:
    keys = job_with_callback(store, "cancelled")
    store.cancel(keys)

    [hook] = queued(client)
    assert hook["event"] == "failed"
    assert orjson.loads(hook["error"])["code"] == ErrorCode.CANCELLED_BY_USER


def test_progress_events_only_when_asked_and_only_when_the_percent_rises(
    store: JobStore, client: Any
) -> None:
    keys = job_with_callback(store, "progress", "progress")
    token = store.start(keys).token
    store.report(keys, 10, token=token)
    store.report(keys, 10, "same percent, new message", token=token)
    store.report(keys, 5, token=token)
    store.report(keys, 20, token=token)
    store.finish_done(keys, "[]", token=token)  # done not asked for

    assert sorted(h["progress"] for h in queued(client)) == [10, 20]
    assert {h["event"] for h in queued(client)} == {"progress"}


def test_an_attempt_settles_the_delivery_and_the_record_shows_the_latest(
    store: JobStore, client: Any
) -> None:
    keys = job_with_callback(store, "settle")
    store.cancel(keys)
    [hook_id] = store.claim_hooks()
    payload = store.hook(hook_id)
    assert payload is not None

    payload["attempts"] = 1
    assert store.settle_hook(hook_id, keys.record, CallbackState.PENDING, payload, 500, 5000)
    assert store.read(keys, poll=False).callback == {
        "url": URL,
        "events": ["done", "failed"],
        "state": "pending",
        "attempts": 1,
        "last_status": 500,
    }
    assert store.hook(hook_id) == payload  # kept for the retry, with its attempts

    payload["attempts"] = 2
    assert store.settle_hook(hook_id, keys.record, CallbackState.DELIVERED, payload, 204)
    callback = store.read(keys, poll=False).callback
    assert callback is not None
    assert (callback["state"], callback["attempts"], callback["last_status"]) == (
        "delivered",
        2,
        204,
    )
    assert store.hook(hook_id) is None
    assert not client.exists(HOOKS_DUE)
    # A second task with the same delivery finds nothing to do.
    assert not store.settle_hook(hook_id, keys.record, CallbackState.FAILED, payload, None)
