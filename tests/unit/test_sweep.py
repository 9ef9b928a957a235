"""workers/sweep.py: the periodic sweep resends what was requeued, once.

A job handed back by its worker is on the requeue list at once, without
waiting for a lease to lapse.
"""

from __future__ import annotations

from tests.unit.helpers import MakeJob
from workers.keys import JobKeys
from workers.registry import DEFAULT_PRIORITY
from workers.store import JobStore
from workers.sweep import sweep


class Sent:
    """Stands in for sending a Celery message: records what would be sent."""

    def __init__(self) -> None:
        self.messages: list[tuple[JobKeys, str, int, str, int]] = []

    def __call__(self, keys: JobKeys, type_name: str, seq: int, queue: str, priority: int) -> None:
        self.messages.append((keys, type_name, seq, queue, priority))


def handed_back(store: JobStore, make_job: MakeJob) -> JobKeys:
    keys = make_job()
    taken = store.start(keys, "node:1")
    assert store.hand_back(keys, taken.token)
    return keys


def test_the_sweep_resends_a_requeued_job_with_its_type_as_its_next_message(
    store: JobStore, make_job: MakeJob
) -> None:
    keys = handed_back(store, make_job)
    sent = Sent()

    counts = sweep(store, sent)

    # On the job's queue, at the job's priority (the default: no priority given).
    assert sent.messages == [(keys, "demo.count", 2, store.settings.queue, DEFAULT_PRIORITY)]
    assert counts["resent"] == 1
    assert store.requeued() == []


def test_a_second_sweep_sends_nothing_again(store: JobStore, make_job: MakeJob) -> None:
    handed_back(store, make_job)
    sweep(store, Sent())
    sent = Sent()

    counts = sweep(store, sent)

    assert sent.messages == []
    assert counts["resent"] == 0


def test_a_requeued_job_that_is_gone_is_dropped_without_a_message(
    store: JobStore, make_job: MakeJob
) -> None:
    keys = handed_back(store, make_job)
    store.redis.delete(keys.record)
    sent = Sent()

    counts = sweep(store, sent)

    assert (sent.messages, counts["resent"]) == ([], 0)
    assert store.requeued() == []
