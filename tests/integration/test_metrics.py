"""GET /metrics tells the truth about jobs that really ran."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import submit

pytestmark = pytest.mark.integration


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def test_metrics_count_submitted_and_finished_jobs(api: FlaskClient) -> None:
    before = scrape(api)
    done = ("jobgate_jobs_finished_total", (("code", ""), ("status", "DONE")))
    failed = ("jobgate_jobs_finished_total", (("code", "JOB_ERROR"), ("status", "FAILED")))

    for _ in range(3):
        assert submit(api, params={"n": 1}, wait=10).get_json()["status"] == "DONE"
    assert submit(api, params={"n": 2, "fail_at": 0}, wait=10).get_json()["status"] == "FAILED"

    after = scrape(api)
    assert (
        after[("jobgate_jobs_submitted_total", ())] - before[("jobgate_jobs_submitted_total", ())]
        == 4
    )
    assert after[done] - before.get(done, 0) == 3
    assert after[failed] - before.get(failed, 0) == 1
    assert after[("jobgate_redis_up", ())] == 1
    assert after[("jobgate_workers_alive", ())] >= 1
    assert ("jobgate_jobs_queued", (("queue", "jobgate-test"),)) in after
