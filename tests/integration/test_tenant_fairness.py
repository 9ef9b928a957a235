"""One tenant cannot take what the others need: a process's wait slots (long
polls, replays with wait), or Redis time with a filtered listing.

The app runs in this process (its WaitSlots are read directly) against the
real Redis; the jobs sit in a queue no worker reads, so they change only when
the test cancels them, and a waiting request answers only then.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.context import WaitSlots
from tests.support.harness import wait_until
from workers.config import Settings

pytestmark = pytest.mark.integration

ALICE, BOB = "key-alice-" + uuid.uuid4().hex, "key-bob-" + uuid.uuid4().hex
LONG = 25  # seconds a parked request would wait: only a cancel ends it sooner


@pytest.fixture
def shared_app(settings: Settings) -> Flask:
    # 8 threads: 6 wait slots, at most 3 for one tenant.
    return create_app(
        settings.with_overrides(
            api_keys={ALICE: "alice", BOB: "bob"},
            queue="jobgate-share-" + uuid.uuid4().hex[:6],
            web_threads=8,
            tenant_wait_share=0.5,
        )
    )


def slots(app: Flask) -> WaitSlots:
    found: WaitSlots = app.extensions["jobgate"].wait_slots
    return found


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(client: FlaskClient, key: str, job_id: str, wait: float = 0) -> Any:
    body = {"type": "demo.count", "params": {"n": 1}, "id": job_id, "wait": wait}
    return client.post("/v1/jobs", json=body, headers=auth(key))


class Requests:
    """Requests made from threads; their answers as (status code, job status)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, str]] = []
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, count: int, call: Any) -> None:
        def run() -> None:
            response = call()
            with self._lock:
                self.answers.append((response.status_code, response.get_json()["status"]))

        for _ in range(count):
            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(LONG + 15)

    def count(self) -> int:
        with self._lock:
            return len(self.answers)


@pytest.fixture
def jobs(shared_app: Flask) -> Iterator[dict[str, str]]:
    client = shared_app.test_client()
    ids = {"alice": "share-a-" + uuid.uuid4().hex, "bob": "share-b-" + uuid.uuid4().hex}
    assert submit(client, ALICE, ids["alice"]).status_code == 202
    assert submit(client, BOB, ids["bob"]).status_code == 202
    yield ids
    client.delete(f"/v1/jobs/{ids['alice']}", headers=auth(ALICE))
    client.delete(f"/v1/jobs/{ids['bob']}", headers=auth(BOB))


def test_one_tenants_flood_of_long_polls_leaves_another_tenant_its_waits(
    shared_app: Flask, jobs: dict[str, str]
) -> None:
    client = shared_app.test_client()
    alice, bob = Requests(), Requests()

    alice.start(6, lambda: client.get(f"/v1/jobs/{jobs['alice']}?wait={LONG}", headers=auth(ALICE)))
    wait_until(lambda: alice.count() == 3, 30, "alice's polls past her share to answer")
    wait_until(lambda: slots(shared_app).held("alice") == 3, 30, "alice's 3 waits")
    bob.start(3, lambda: client.get(f"/v1/jobs/{jobs['bob']}?wait={LONG}", headers=auth(BOB)))
    wait_until(lambda: slots(shared_app).held("bob") == 3, 30, "bob's 3 polls to wait")
    answered_at_once = (alice.count(), bob.count())
    client.delete(f"/v1/jobs/{jobs['bob']}", headers=auth(BOB))
    client.delete(f"/v1/jobs/{jobs['alice']}", headers=auth(ALICE))
    alice.join()
    bob.join()

    assert answered_at_once == (3, 0)
    assert sorted(alice.answers) == [(200, "FAILED")] * 3 + [(202, "INITIALIZED")] * 3
    # Bob's polls waited and were woken by the cancel.
    assert bob.answers == [(200, "FAILED")] * 3


def test_an_idempotent_replay_with_wait_claims_a_slot_like_a_poll(
    shared_app: Flask, jobs: dict[str, str]
) -> None:
    client = shared_app.test_client()
    alice, bob = Requests(), Requests()
    alice.start(3, lambda: client.get(f"/v1/jobs/{jobs['alice']}?wait={LONG}", headers=auth(ALICE)))
    wait_until(lambda: slots(shared_app).held("alice") == 3, 30, "alice's 3 waits")

    # Past alice's share: her replay answers at once instead of parking a thread.
    replay = submit(client, ALICE, jobs["alice"], wait=LONG)
    parked_meanwhile = (alice.count(), slots(shared_app).held("alice"))
    # Within bob's share: his replay waits, in one of his slots.
    bob.start(1, lambda: submit(client, BOB, jobs["bob"], wait=LONG))
    wait_until(lambda: slots(shared_app).held("bob") == 1, 30, "bob's replay to wait")
    client.delete(f"/v1/jobs/{jobs['bob']}", headers=auth(BOB))
    client.delete(f"/v1/jobs/{jobs['alice']}", headers=auth(ALICE))
    alice.join()
    bob.join()

    assert replay.status_code == 202
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert parked_meanwhile == (0, 3)
    assert bob.answers == [(201, "FAILED")]  # woken by the cancel


def test_a_filtered_listing_page_examines_at_most_200_entries(settings: Settings) -> None:
    app = create_app(
        settings.with_overrides(
            api_keys={ALICE: "lister-" + uuid.uuid4().hex[:6]},
            queue="jobgate-list-" + uuid.uuid4().hex[:6],
            tenant_max_active=1000,
        )
    )
    client = app.test_client()
    oldest = client.post(
        "/v1/jobs", json={"type": "test.big", "params": {"size": 1}, "wait": 0}, headers=auth(ALICE)
    ).get_json()["id"]
    for n in range(250):
        assert submit(client, ALICE, f"filler-{n}").status_code == 202

    first = client.get("/v1/jobs?type=test.big&limit=1", headers=auth(ALICE)).get_json()
    second = client.get(
        f"/v1/jobs?type=test.big&limit=1&cursor={first['next_cursor']}", headers=auth(ALICE)
    ).get_json()

    # 200 of the 251 entries examined, none matched: a short page that says "go on".
    assert first["jobs"] == []
    assert first["next_cursor"] is not None
    assert [job["id"] for job in second["jobs"]] == [oldest]
