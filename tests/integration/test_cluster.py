"""JOBGATE_REDIS_MODE=cluster: job state on a 3-master Redis Cluster.

A job's keys share one hash slot; the shared indexes (queue per priority,
tenant lists, active jobs, due set, requeue list, stats, webhook deliveries,
job histograms) live in slots of their own, so a
script touches the job's slot only and its index commands follow in steps of
their own (workers/lua/_cluster.lua). These tests show the indexes across
the nodes, that no step spans slots (the cluster would refuse it:
CROSSSLOT), and the repair path: a crash between a script and its index
steps leaves an entry missing or dangling, and the sweep writes it right.
The client-API suite runs against a cluster too: ``make test-cluster``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from jobgate.redis_server import RedisServer
from tests.integration.conftest import make_test_settings
from tests.support.harness import wait_until
from tests.support.topologies import Cluster
from workers import keys as keyspace
from workers.config import Settings
from workers.job_metrics import JobMetrics
from workers.keys import JobKeys
from workers.registry import DEFAULT_PRIORITY
from workers.states import CallbackState, Status
from workers.store import JobStore
from workers.store.scripts import CancelOutcome, CreateOutcome

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster(masters=3) as started:
        yield started


@pytest.fixture(scope="module")
def broker() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def csettings(cluster: Cluster, broker: RedisServer) -> Settings:
    return make_test_settings(
        cluster.url,
        redis_mode="cluster",
        broker_url=broker.url,
        queue=f"cluster-{uuid.uuid4().hex[:6]}",
        lease_ttl=1.5,
        tenant_max_active=3,
    )


@pytest.fixture(scope="module")
def cstore(csettings: Settings) -> JobStore:
    return JobStore.from_settings(csettings)


def tenant() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def create(store: JobStore, keys: JobKeys, poll_timeout: int = 0, **options: Any) -> CreateOutcome:
    created = store.create(
        keys,
        "demo.count",
        '{"n":1}',
        poll_timeout=poll_timeout,
        retention=60,
        max_runtime=60,
        **options,
    )
    return created.outcome


def indexed(store: JobStore, keys: JobKeys) -> dict[str, bool]:
    """Where the job is among the shared indexes."""
    client: Any = store.redis
    member = keys.task_arg()
    return {
        "queue": client.zscore(keyspace.queue_index(store.settings.queue, DEFAULT_PRIORITY), member)
        is not None,
        "listed": client.zscore(keyspace.tenant_index(keys.tenant), keys.job_id) is not None,
        "listed_until": client.zscore(keyspace.tenant_listed(keys.tenant), keys.job_id) is not None,
        "active": client.zscore(keyspace.tenant_active(keys.tenant), keys.job_id) is not None,
        "due": client.zscore(keyspace.DUE, member) is not None,
    }


class Crash(Exception):
    pass


def crash_after_the_script(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next script's index steps never happen (the process died after it)."""

    def die(*args: Any) -> None:
        monkeypatch.undo()
        raise Crash

    monkeypatch.setattr(store, "_apply_deferred", die)


def sweep_until(store: JobStore, predicate: Any, what: str) -> None:
    """Run the sweep (as `jobgate beat` does) until ``predicate()``."""
    wait_until(lambda: store.sweep_due() >= 0 and predicate(), 30, what, step=0.2)


def test_indexes_and_jobs_spread_over_the_nodes(cstore: JobStore, cluster: Cluster) -> None:
    client: Any = cstore.redis
    jobs = [JobKeys(tenant(), "job") for _ in range(12)]
    for keys in jobs:
        assert create(cstore, keys) is CreateOutcome.CREATED
    nodes = {client.get_node_from_key(keys.record).name for keys in jobs}
    assert len(nodes) == 3  # 12 jobs on three masters (~1 in 20,000 to fail by chance)
    for keys in jobs:
        slots = {client.keyslot(k) for k in keys.all()}
        assert len(slots) == 1
        assert indexed(cstore, keys) == dict.fromkeys(
            ("queue", "listed", "listed_until", "active", "due"), True
        )
    # One script over the job's keys and an index is refused by the cluster
    # when they are in two slots: what the deferred steps avoid.
    keys = next(k for k in jobs if client.keyslot(k.record) != client.keyslot(keyspace.DUE))
    with pytest.raises(redis.RedisClusterException):
        client.eval("return 1", 2, keys.record, keyspace.DUE)


def test_a_crash_after_create_leaves_the_job_due_and_the_sweep_indexes_it(
    cstore: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = JobKeys(tenant(), "crashed")
    crash_after_the_script(cstore, monkeypatch)
    with pytest.raises(Crash):
        create(cstore, keys)
    # The record exists; of its index entries only the due-first one does.
    assert cstore.read(keys, poll=False).status is Status.INITIALIZED
    assert indexed(cstore, keys) == {
        "queue": False,
        "listed": False,
        "listed_until": False,
        "active": False,
        "due": True,
    }
    assert keys.job_id not in [i for i, _ in cstore.list_ids(keys.tenant, None, 10)]

    # Within the lease TTL the sweep looks at it and writes every entry.
    sweep_until(cstore, lambda: indexed(cstore, keys)["queue"], "the sweep to repair the job")
    assert all(indexed(cstore, keys).values()), indexed(cstore, keys)
    assert [i for i, _ in cstore.list_ids(keys.tenant, None, 10)] == [keys.job_id]
    assert cstore.read(keys, poll=False).queue_position is not None


def test_a_crash_after_cancel_leaves_dangling_entries_the_sweep_removes(
    cstore: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = JobKeys(tenant(), "cancelled")
    assert create(cstore, keys) is CreateOutcome.CREATED
    crash_after_the_script(cstore, monkeypatch)
    with pytest.raises(Crash):
        cstore.cancel(keys)
    assert cstore.read(keys, poll=False).status is Status.FAILED
    assert indexed(cstore, keys)["queue"] and indexed(cstore, keys)["active"]

    sweep_until(cstore, lambda: not indexed(cstore, keys)["due"], "the sweep to look at it")
    where = indexed(cstore, keys)
    assert not where["queue"] and not where["active"], where
    # Listed still: a terminal job is listed until its keys expire.
    assert where["listed"] and where["listed_until"], where


def test_the_tenant_cap_counts_across_slots(cstore: JobStore) -> None:
    owner = tenant()
    outcomes = [create(cstore, JobKeys(owner, f"j{i}")) for i in range(4)]
    assert outcomes == [CreateOutcome.CREATED] * 3 + [CreateOutcome.TOO_MANY]
    cstore.cancel(JobKeys(owner, "j0"))
    assert create(cstore, JobKeys(owner, "j4")) is CreateOutcome.CREATED


def test_a_lost_lease_is_requeued_by_the_sweep(cstore: JobStore) -> None:
    keys = JobKeys(tenant(), "lost")
    assert create(cstore, keys) is CreateOutcome.CREATED
    assert cstore.start(keys, "gone-worker").run
    assert not indexed(cstore, keys)["queue"]
    # Nobody renews the lease (1.5 s): the sweep requeues the job.
    sweep_until(
        cstore,
        lambda: cstore.read(keys, poll=False).status is Status.INITIALIZED,
        "the lease to lapse and the sweep to requeue the job",
    )
    assert indexed(cstore, keys)["queue"]
    assert [k for k, *_ in cstore.claim_requeued()] == [keys]


def test_queue_position_counts_the_higher_priorities_across_slots(cstore: JobStore) -> None:
    client: Any = cstore.redis
    queue = f"prio-{uuid.uuid4().hex[:6]}"
    low = [JobKeys(tenant(), f"low{i}") for i in range(3)]
    high = JobKeys(tenant(), "high")
    for keys in low:
        assert create(cstore, keys, queue=queue, priority=1) is CreateOutcome.CREATED
    assert create(cstore, high, queue=queue, priority=8) is CreateOutcome.CREATED
    # The two priorities' indexes are keys of their own (here on two nodes or one).
    assert client.zcard(keyspace.queue_index(queue, 1)) == 3
    assert client.zcard(keyspace.queue_index(queue, 8)) == 1
    # The high one is first; each low one has the high one ahead of it.
    assert cstore.read(high, poll=False).queue_position == 0
    positions = [cstore.read(keys, poll=False).queue_position for keys in low]
    assert positions == [1, 2, 3]
    # Started, the high one leaves its index: the low ones move up.
    assert cstore.start(high, "w").run
    assert client.zcard(keyspace.queue_index(queue, 8)) == 0
    assert [cstore.read(keys, poll=False).queue_position for keys in low] == [0, 1, 2]


def test_a_webhook_delivery_is_queued_and_settled_across_slots(cstore: JobStore) -> None:
    client: Any = cstore.redis
    keys = JobKeys(tenant(), "hooked")
    assert (
        create(
            cstore, keys, callback_url="https://hooks.example.com/x", callback_events=("failed",)
        )
        is CreateOutcome.CREATED
    )
    assert cstore.cancel(keys) is CancelOutcome.CANCELLED
    # The cancel's add_hook wrote the delivery in the deliveries' own slot.
    assert client.keyslot(keyspace.HOOKS) == client.keyslot(keyspace.HOOKS_DUE)
    hook_id = str(client.hget(keys.record, "cbn"))
    delivery = cstore.hook(hook_id)
    assert delivery is not None and delivery["job"] == keys.task_arg()
    assert delivery["event"] == "failed"
    assert hook_id in cstore.claim_hooks()
    assert cstore.settle_hook(hook_id, keys.record, CallbackState.DELIVERED, delivery, 204)
    assert cstore.hook(hook_id) is None
    assert client.zscore(keyspace.HOOKS_DUE, hook_id) is None
    assert client.hget(keys.record, "cbs") == CallbackState.DELIVERED.value
    assert client.hget(keys.record, "cbh") == "204"
    # Settled once: a second outcome changes nothing.
    assert not cstore.settle_hook(hook_id, keys.record, CallbackState.FAILED, delivery, 500)
    assert client.hget(keys.record, "cbs") == CallbackState.DELIVERED.value


def test_the_job_histograms_are_written_across_slots(cstore: JobStore) -> None:
    client: Any = cstore.redis
    keys = JobKeys(tenant(), "timed")
    assert create(cstore, keys) is CreateOutcome.CREATED
    waited = float(client.hget(keyspace.JOB_QUEUE_WAIT, "demo.count|sum") or 0)
    counted = sum(
        int(v) for f, v in client.hgetall(keyspace.JOB_QUEUE_WAIT).items() if "|sum" not in f
    )
    time.sleep(0.3)  # a wait of a fraction of a second: its exact sum is checked
    started = cstore.start(keys, "w")
    assert started.run
    # start_job observed the queue wait: one more in a bucket, and the sum
    # grown by exactly created → started (a fraction: deferred as text, not
    # truncated to an integer).
    after = sum(
        int(v) for f, v in client.hgetall(keyspace.JOB_QUEUE_WAIT).items() if "|sum" not in f
    )
    assert after == counted + 1
    created_ms, started_ms = (int(v) for v in client.hmget(keys.record, "created", "started"))
    grown = float(client.hget(keyspace.JOB_QUEUE_WAIT, "demo.count|sum")) - waited
    assert grown == pytest.approx((started_ms - created_ms) / 1000, abs=1e-6)
    assert grown >= 0.3

    # A job someone else ended is observed once, by the first look after it.
    def failed_durations() -> tuple[int, float]:
        fields = client.hgetall(keyspace.JOB_DURATION)
        counts = sum(
            int(v)
            for f, v in fields.items()
            if f.startswith("demo.count|FAILED|") and not f.endswith("|sum")
        )
        return counts, float(fields.get("demo.count|FAILED|sum", 0))

    before = failed_durations()
    assert cstore.cancel(keys) is CancelOutcome.CANCELLED
    metrics = JobMetrics(client)
    first, second = metrics.ended(keys), metrics.ended(keys)
    assert first.status is Status.FAILED and first.first_seen and first.seconds is not None
    assert not second.first_seen
    counts, total = failed_durations()
    assert counts == before[0] + 1
    assert total - before[1] == pytest.approx(first.seconds, abs=1e-6)


def test_a_crash_after_cancel_loses_no_webhook_delivery(
    cstore: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    client: Any = cstore.redis
    keys = JobKeys(tenant(), "hooked-crash")
    url = "https://hooks.example.com/crash"
    assert create(cstore, keys, callback_url=url, callback_events=("failed",)) is (
        CreateOutcome.CREATED
    )
    crash_after_the_script(cstore, monkeypatch)
    with pytest.raises(Crash):
        cstore.cancel(keys)
    # The record says a delivery is pending; its index step never ran.
    hook_id = str(client.hget(keys.record, "cbn"))
    assert client.hget(keys.record, "cbs") == CallbackState.PENDING.value
    assert cstore.hook(hook_id) is None

    sweep_until(cstore, lambda: cstore.hook(hook_id) is not None, "the sweep to queue it again")
    delivery = cstore.hook(hook_id)
    assert delivery is not None
    assert (delivery["job"], delivery["event"], delivery["url"]) == (keys.task_arg(), "failed", url)
    assert delivery["status"] == Status.FAILED.value
    assert delivery["error"] and "CANCELLED_BY_USER" in delivery["error"]
    assert client.zscore(keyspace.HOOKS_DUE, hook_id) is not None
    # Delivered, the record says so and the sweep writes it no more.
    assert cstore.settle_hook(hook_id, keys.record, CallbackState.DELIVERED, delivery, 200)
    cstore.sweep_due()
    assert cstore.hook(hook_id) is None
