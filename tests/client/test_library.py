"""``Client`` and ``Job`` against a real Jobgate: every method, every error family."""

from __future__ import annotations

import io
import itertools
import uuid

import pytest
from jobgate_client import (
    Client,
    IdConflict,
    JobExpired,
    JobFailed,
    JobNotFound,
    RateLimited,
    Snapshot,
    Unauthorized,
    ValidationFailed,
    WaitTimeout,
)

from tests.client.support import KEY, RecordingProxy
from tests.support.harness import LiveServer, wait_until

pytestmark = pytest.mark.integration


def table(n: int) -> dict[str, list[object]]:
    return {"columns": ["step", "square"], "rows": [[i, i * i] for i in range(n)]}


def test_submit_then_wait_ends_done_with_the_result(client: Client) -> None:
    job = client.submit("demo.count", {"n": 20, "delay": 0.05}, wait=0)

    assert job.status in ("INITIALIZED", "RUNNING")
    assert job.wait() is job

    assert (job.status, job.progress) == ("DONE", 100)
    assert job.message.startswith("Done in")
    assert job.result() == table(20)


def test_a_job_done_within_the_submit_wait_needs_no_other_request(
    server: LiveServer, proxy: RecordingProxy
) -> None:
    with Client(proxy.url, api_key=KEY) as client:
        job = client.submit("demo.count", {"n": 3}, wait=10)
        result = job.result()

    assert job.status == "DONE"
    assert result == table(3)
    assert [(hit.method, hit.status) for hit in proxy.hits] == [("POST", 201)]


def test_the_client_picks_the_id_unless_given_one(client: Client) -> None:
    chosen = f"mine-{uuid.uuid4().hex}"

    picked = client.submit("demo.count", {"n": 1}, wait=5)
    given = client.submit("demo.count", {"n": 1}, id=chosen, wait=5)

    assert len(picked.id) == 26 and picked.id.isalnum()
    assert given.id == chosen
    assert client.job(chosen).status == "DONE"


def test_on_progress_sees_the_percent_rise_to_100(client: Client) -> None:
    seen: list[Snapshot] = []
    job = client.submit("demo.count", {"n": 30, "delay": 0.1}, wait=0)

    job.wait(on_progress=seen.append)

    percents = [s.progress for s in seen]
    assert percents == sorted(percents)
    assert len(set(percents)) >= 3
    assert (seen[-1].status, seen[-1].progress) == ("DONE", 100)


def test_iter_progress_yields_each_change_until_the_end(client: Client) -> None:
    job = client.submit("demo.count", {"n": 30, "delay": 0.1}, wait=0)

    seen = list(job.iter_progress())

    assert all(b.changed_from(a) for a, b in itertools.pairwise(seen))
    assert seen[-1].status == "DONE"
    assert job.status == "DONE"


def test_refresh_reads_the_job_as_it_is_now(client: Client) -> None:
    job = client.submit("demo.count", {"n": 30, "delay": 0.1}, wait=0)

    wait_until(lambda: job.refresh().progress > 0, 30, "progress to move")

    assert job.status == "RUNNING"
    assert job.snapshot.poll_deadline is not None
    job.cancel()


def test_wait_with_a_timeout_raises_wait_timeout_and_the_job_goes_on(client: Client) -> None:
    job = client.submit("demo.count", {"n": 100, "delay": 0.2}, wait=0)

    with pytest.raises(WaitTimeout):
        job.wait(timeout=2)

    assert job.refresh().status in ("INITIALIZED", "RUNNING")
    job.cancel()


def test_rows_streams_each_row_of_a_tabular_result(client: Client) -> None:
    job = client.submit("demo.count", {"n": 5000}, wait=0)

    rows = list(job.rows())

    assert rows == [{"step": i, "square": i * i} for i in range(5000)]


def test_download_streams_csv_to_a_path_and_ndjson_to_a_file(client: Client, tmp_path) -> None:
    job = client.submit("demo.count", {"n": 3}, wait=0)
    sink = io.BytesIO()

    written = job.download(tmp_path / "out.csv")
    job.download(sink, format="ndjson")

    assert (tmp_path / "out.csv").read_bytes() == b"step,square\r\n0,0\r\n1,1\r\n2,4\r\n"
    assert written == len((tmp_path / "out.csv").read_bytes())
    assert sink.getvalue().splitlines()[2] == b'{"step":2,"square":4}'


def test_partial_returns_the_rows_published_so_far(client: Client) -> None:
    job = client.submit("demo.count", {"n": 60, "delay": 0.1}, wait=0)
    wait_until(lambda: job.refresh().progress >= 10, 30, "a few steps")

    partial = job.partial()
    job.cancel()

    assert partial["columns"] == ["step", "square"]
    assert 0 < len(partial["rows"]) < 60
    assert partial["rows"] == table(60)["rows"][: len(partial["rows"])]


def test_cancel_stops_a_live_job_and_deletes_a_finished_one(client: Client) -> None:
    job = client.submit("demo.count", {"n": 100, "delay": 0.2}, wait=0)

    cancelled = job.cancel()
    deleted = job.cancel()

    assert cancelled is not None and cancelled.status == "FAILED"
    assert job.error is not None and job.error["code"] == "CANCELLED_BY_USER"
    assert deleted is None
    with pytest.raises(JobExpired) as expired:
        job.refresh()
    assert (expired.value.status, expired.value.code) == (410, "JOB_EXPIRED")


def test_a_failed_job_raises_job_failed_with_its_error(client: Client) -> None:
    job = client.submit("demo.count", {"n": 5, "fail_at": 1}, wait=0)

    job.wait()
    with pytest.raises(JobFailed) as failed:
        job.result()

    assert job.status == "FAILED"
    error = failed.value
    assert (error.job_id, error.code, error.retryable) == (job.id, "JOB_ERROR", False)
    assert error.message == "failed at step 1"
    assert error.details["exception"] == "ValueError"
    with pytest.raises(JobFailed):
        list(job.rows())


def test_an_unknown_job_raises_job_not_found(client: Client) -> None:
    with pytest.raises(JobNotFound) as missing:
        client.job("never-issued")

    assert (missing.value.status, missing.value.code) == (404, "JOB_NOT_FOUND")


def test_another_tenants_job_is_not_found(client: Client, server: LiveServer) -> None:
    job = client.submit("demo.count", {"n": 1}, wait=5)

    with Client(server.url, api_key="other-key") as other, pytest.raises(JobNotFound):
        other.job(job.id)


def test_an_id_reused_with_other_params_raises_id_conflict(client: Client) -> None:
    first = client.submit("demo.count", {"n": 2}, wait=5)

    again = client.submit("demo.count", {"n": 2}, id=first.id)
    with pytest.raises(IdConflict) as conflict:
        client.submit("demo.count", {"n": 3}, id=first.id)

    assert again.id == first.id and again.status == "DONE"
    assert conflict.value.code == "ID_CONFLICT"


def test_invalid_params_raise_validation_failed_with_the_field_errors(client: Client) -> None:
    with pytest.raises(ValidationFailed) as invalid:
        client.submit("demo.count", {"n": 0})

    assert invalid.value.status == 422
    assert "n" in invalid.value.errors["params"]


def test_a_wrong_key_raises_unauthorized(server: LiveServer) -> None:
    with Client(server.url, api_key="wrong") as client, pytest.raises(Unauthorized) as refused:
        client.job_types()

    assert refused.value.status == 401


def test_jobs_iterates_every_page_newest_first(server: LiveServer) -> None:
    with Client(server.url, api_key="other-key") as client:
        ids = [client.submit("demo.count", {"n": 1}, wait=5).id for _ in range(5)]

        listed = [s.id for s in client.jobs(type="demo.count", page_size=2)]
        done = [s.id for s in client.jobs(status="DONE", page_size=2)]

    assert [i for i in listed if i in ids] == ids[::-1]
    assert set(ids) <= set(done)


def test_results_reads_several_jobs_at_once_past_the_100_id_limit(client: Client) -> None:
    done = client.submit("demo.count", {"n": 2}, wait=5)
    failed = client.submit("demo.count", {"n": 3, "fail_at": 0}, wait=5)
    unknown = [f"nobody-{i}" for i in range(150)]

    found = client.results([done.id, failed.id, *unknown])

    assert found[done.id] == {"status": "DONE", "result": table(2)}
    assert found[failed.id]["error"]["code"] == "JOB_ERROR"
    assert len(found) == 152
    assert {found[i]["status"] for i in unknown} == {"NOT_FOUND"}


def test_job_types_lists_the_registered_types(client: Client) -> None:
    types = {t.name: t for t in client.job_types()}

    assert types["demo.count"].tabular
    assert "n" in types["demo.count"].params_schema["properties"]


def test_429_is_retried_after_the_retry_after_it_gives(proxy: RecordingProxy) -> None:
    proxy.refuse(429, 2, retry_after=1)

    with Client(proxy.url, api_key=KEY) as client:
        names = [t.name for t in client.job_types()]

    assert "demo.count" in names
    starts = [hit.at for hit in proxy.hits]
    assert len(starts) == 3
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(starts))


def test_429_past_the_retry_deadline_raises_rate_limited(proxy: RecordingProxy) -> None:
    proxy.refuse(429, 100, retry_after=1)

    with (
        Client(proxy.url, api_key=KEY, retry_timeout=3) as client,
        pytest.raises(RateLimited) as limited,
    ):
        client.job_types()

    assert limited.value.status == 429
    assert 3 <= len(proxy.hits) <= 5
