"""JobStore.create (create_job.lua): the record, its clocks, idempotent replays."""

from __future__ import annotations

from typing import Any

from tests.unit.helpers import (
    MAX_RUNTIME,
    POLL_TIMEOUT,
    RETENTION,
    TOMBSTONE_TTL,
    MakeJob,
    assert_ttl_close,
    jobgate_ttls,
    record_hash,
)
from workers import keys as keyspace
from workers.keys import JobKeys
from workers.registry import DEFAULT_PRIORITY
from workers.store import CreateOutcome, JobStore


def create(
    store: JobStore, keys: JobKeys, params_json: str = '{"n":3}', **clocks: int
) -> CreateOutcome:
    values: dict[str, Any] = {
        "poll_timeout": POLL_TIMEOUT,
        "retention": RETENTION,
        "max_runtime": MAX_RUNTIME,
    }
    values.update(clocks)
    return store.create(keys, "demo.count", params_json, **values).outcome


def test_created_job_has_a_queued_record(store: JobStore, client: Any, keys: JobKeys) -> None:
    assert create(store, keys) is CreateOutcome.CREATED

    record = record_hash(client, keys)
    assert record["type"] == "demo.count"
    assert record["params"] == '{"n":3}'
    assert record["status"] == "INITIALIZED"
    assert record["progress"] == "0"
    assert record["attempt"] == "0"
    assert record["poll_timeout"] == str(POLL_TIMEOUT)
    assert record["retention"] == str(RETENTION)
    assert record["max_runtime"] == str(MAX_RUNTIME)
    assert int(record["deadline"]) == int(record["created"]) + POLL_TIMEOUT * 1000


def test_created_job_has_a_heartbeat_that_lives_poll_timeout(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)

    assert_ttl_close(client, keys.heartbeat, POLL_TIMEOUT * 1000)


def test_created_job_has_a_tombstone_outliving_the_record(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)

    live_ms = (POLL_TIMEOUT + RETENTION) * 1000
    assert_ttl_close(client, keys.record, live_ms)
    assert_ttl_close(client, keys.tombstone, live_ms + TOMBSTONE_TTL * 1000)


def test_created_job_leaves_no_key_without_ttl(store: JobStore, client: Any, keys: JobKeys) -> None:
    create(store, keys)

    ttls = jobgate_ttls(client)
    indexes = {
        keyspace.queue_index(store.settings.queue, DEFAULT_PRIORITY),
        keyspace.tenant_index(keys.tenant),
        keyspace.tenant_active(keys.tenant),
        keyspace.SEQUENCE,
        keyspace.STATS,
        keyspace.tenant_listed(keys.tenant),
        keyspace.DUE,
    }
    assert set(ttls) == {keys.record, keys.heartbeat, keys.tombstone, *indexes}
    assert all(ttl > 0 for ttl in ttls.values()), ttls


def test_job_without_poll_timeout_has_no_heartbeat(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    assert create(store, keys, poll_timeout=0) is CreateOutcome.CREATED

    assert not client.exists(keys.heartbeat)
    assert "deadline" not in record_hash(client, keys)
    # With no heartbeat, the record lives as long as the job may run, plus retention.
    assert_ttl_close(client, keys.record, (MAX_RUNTIME + RETENTION) * 1000)


def test_same_id_and_payload_again_is_exists(store: JobStore, client: Any, keys: JobKeys) -> None:
    create(store, keys)
    before = record_hash(client, keys)

    assert create(store, keys) is CreateOutcome.EXISTS
    assert record_hash(client, keys) == before


def test_same_id_with_other_params_is_conflict(store: JobStore, client: Any, keys: JobKeys) -> None:
    create(store, keys)

    assert create(store, keys, params_json='{"n":4}') is CreateOutcome.CONFLICT
    assert record_hash(client, keys)["params"] == '{"n":3}'


def test_same_id_with_other_type_is_conflict(store: JobStore, keys: JobKeys) -> None:
    create(store, keys)

    reply = store.create(
        keys,
        "demo.other",
        '{"n":3}',
        poll_timeout=POLL_TIMEOUT,
        retention=RETENTION,
        max_runtime=MAX_RUNTIME,
    )
    assert reply.outcome is CreateOutcome.CONFLICT


def test_replay_of_a_finished_job_is_exists(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("DONE")

    assert create(store, job) is CreateOutcome.EXISTS
    assert record_hash(client, job)["status"] == "DONE"


def test_id_whose_record_expired_is_tombstoned(store: JobStore, client: Any, keys: JobKeys) -> None:
    create(store, keys)
    client.delete(keys.record, keys.heartbeat)  # the record's retention ran out

    assert create(store, keys) is CreateOutcome.TOMBSTONED
    assert not client.exists(keys.record)


def test_keys_of_a_job_share_the_prefix_and_hash_tag() -> None:
    job = JobKeys("t1", "report-1")

    for key in job.all():
        assert key.startswith("jobgate:job:{t1:report-1}")
    assert len(set(job.all())) == 7
