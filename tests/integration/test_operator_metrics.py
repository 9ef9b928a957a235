"""The metrics an SRE alerts on, after real traffic through a real worker.

Job histograms are written by the worker into Redis, HTTP figures by the API
process (flushed to Redis, so every process reports the same numbers); a
scrape renders both.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from jobgate.redis_server import RedisServer
from tests.integration.conftest import make_test_settings
from tests.integration.test_metrics import scrape
from tests.support.api import poll_until, submit, terminal
from tests.support.harness import LiveServer, Process, wait_until
from workers.config import Settings

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_two_second_job_lands_in_the_bucket_of_its_duration(api: FlaskClient) -> None:
    name = "jobgate_job_duration_seconds_bucket"
    labels = {"type": "demo.count", "status": "DONE"}
    before = scrape(api)

    job = submit(api, params={"n": 2, "delay": 1.0}, wait=30).get_json()
    assert job["status"] == "DONE"

    # The worker observes the duration just after it wrote DONE (in cluster
    # mode in a step of its own): a scrape at once may come first.
    count = "jobgate_job_duration_seconds_count"

    def observed() -> Samples | None:
        now = scrape(api)
        return now if sample(now, count, **labels) > sample(before, count, **labels) else None

    after = wait_until(observed, 10, "the duration to be observed")
    grew = {
        le: sample(after, name, le=le, **labels) - sample(before, name, le=le, **labels)
        for le in ("1.0", "2.5", "+Inf")
    }
    assert grew == {"1.0": 0, "2.5": 1, "+Inf": 1}
    assert sample(after, count, **labels) - sample(before, count, **labels) == 1
    total = "jobgate_job_duration_seconds_sum"
    assert 2.0 <= sample(after, total, **labels) - sample(before, total, **labels) <= 2.5


def test_a_started_job_adds_its_queue_wait_once(api: FlaskClient) -> None:
    count = "jobgate_job_queue_wait_seconds_count"
    before = scrape(api)

    assert submit(api, params={"n": 1}, wait=20).get_json()["status"] == "DONE"

    after = scrape(api)
    assert sample(after, count, type="demo.count") - sample(before, count, type="demo.count") == 1
    assert sample(after, "jobgate_job_queue_wait_seconds_sum", type="demo.count") >= 0


def test_a_failed_job_is_counted_with_its_status(api: FlaskClient) -> None:
    count = "jobgate_job_duration_seconds_count"
    labels = {"type": "demo.count", "status": "FAILED"}
    before = scrape(api)

    assert submit(api, params={"n": 2, "fail_at": 0}, wait=20).get_json()["status"] == "FAILED"

    assert sample(scrape(api), count, **labels) - sample(before, count, **labels) == 1


def test_a_running_job_counts_as_active_running(api: FlaskClient) -> None:
    job = submit(api, params={"n": 100, "delay": 0.2}, wait=0).get_json()
    poll_until(api, f"/v1/jobs/{job['id']}", lambda doc: doc["status"] == "RUNNING")

    running = sample(scrape(api), "jobgate_jobs_active", status="RUNNING")

    api.delete(f"/v1/jobs/{job['id']}")
    poll_until(api, f"/v1/jobs/{job['id']}", terminal)
    assert running >= 1


def test_the_oldest_queued_age_grows_while_no_worker_consumes_the_queue(
    redis_server: RedisServer,
) -> None:
    queue = "jobgate-idle-" + uuid.uuid4().hex[:6]
    idle = create_app(make_test_settings(redis_server.url, queue=queue)).test_client()
    age = ("jobgate_queue_oldest_job_age_seconds", (("queue", queue),))
    assert scrape(idle)[age] == 0

    job = submit(idle, params={"n": 1}).get_json()
    first = scrape(idle)
    wait_until(lambda: scrape(idle)[age] >= first[age] + 1.5, 30, "the oldest age to grow")

    assert sample(first, "jobgate_jobs_active", status="INITIALIZED") >= 1
    idle.delete(f"/v1/jobs/{job['id']}")
    assert scrape(idle)[age] == 0


def test_http_counters_count_each_request_by_route_and_status(api: FlaskClient) -> None:
    job = submit(api, params={"n": 1}, wait=20).get_json()
    route = "/v1/jobs/<job_id>"
    before = scrape(api)

    for _ in range(5):
        assert api.get(f"/v1/jobs/{job['id']}").status_code == 200
    assert api.get("/v1/no-such-thing").status_code == 404

    after = scrape(api)
    ok = {"method": "GET", "route": route, "status": "200"}
    assert (
        sample(after, "jobgate_http_requests_total", **ok)
        - sample(before, "jobgate_http_requests_total", **ok)
        == 5
    )
    missing = {"method": "GET", "route": "unmatched", "status": "404"}
    assert (
        sample(after, "jobgate_http_requests_total", **missing)
        - sample(before, "jobgate_http_requests_total", **missing)
        == 1
    )
    timed = "jobgate_http_request_duration_seconds_count"
    assert (
        sample(after, timed, method="GET", route=route)
        - sample(before, timed, method="GET", route=route)
        == 5
    )
    assert not any(job["id"] in dict(labels).get("route", "") for _, labels in after)


def test_http_counts_add_up_across_gunicorn_processes(
    settings: Settings, log_dir: Path, worker: Process
) -> None:
    server = LiveServer(settings, log_dir, web_workers=3, web_threads=4)
    try:
        series = (
            "jobgate_http_requests_total",
            (("method", "GET"), ("route", "/v1/job-types"), ("status", "200")),
        )

        def scraped() -> Samples:
            text = requests.get(f"{server.url}/metrics", timeout=10).text
            return {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }

        before = scraped().get(series, 0.0)
        # A new connection each: gunicorn's processes share them out.
        for _ in range(30):
            assert requests.get(f"{server.url}/v1/job-types", timeout=10).status_code == 200

        # Each process flushes its counts within a second; none is lost or doubled.
        wait_until(
            lambda: scraped().get(series, 0.0) - before == 30, 30, "30 counted requests", step=0.5
        )
        time.sleep(2.5)  # two more flush intervals: nothing counted twice
        assert scraped().get(series, 0.0) - before == 30
    finally:
        server.stop()
