"""How the client polls, counted on the server's side of a recording proxy;
what it does when Redis or the connection goes away; memory of a download."""

from __future__ import annotations

import itertools
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobgate_client import Client, Unavailable

from jobgate.redis_server import RedisServer
from tests.client.support import KEY, PatientLiveServer, RecordingProxy, jg
from tests.integration.conftest import make_test_settings
from tests.support.harness import LiveServer

pytestmark = pytest.mark.integration


def job_polls(proxy: RecordingProxy, job_id: str) -> list[float]:
    return [hit.at for hit in proxy.requests_to(f"/v1/jobs/{job_id}") if hit.method == "GET"]


def test_wait_polls_as_often_as_retry_after_asks(proxy: RecordingProxy) -> None:
    with Client(proxy.url, api_key=KEY) as client:
        job = client.submit("demo.count", {"n": 40, "delay": 0.15}, wait=0)
        job.wait()

    assert job.status == "DONE"
    hits = [h for h in proxy.hits if h.method == "POST" or h.path.startswith(f"/v1/jobs/{job.id}")]
    asked = [h.retry_after or 0.0 for h in hits[:-1]]
    gaps = [b.at - a.at for a, b in itertools.pairwise(hits)]
    assert all(h.retry_after for h in hits[:-1])
    # Never sooner than asked (less the proxy's own latency); at most a long
    # poll's wait for the next change later.
    assert all(gap >= ask - 0.25 for gap, ask in zip(gaps, asked, strict=True)), (gaps, asked)
    assert all(gap <= ask + 3 for gap, ask in zip(gaps, asked, strict=True)), (gaps, asked)
    # A 6 s job, advice of 1-10 s: a handful of polls, not one per progress change.
    assert 2 <= len(hits) <= 12
    print(f"\nwait(): {len(hits)} requests, gaps {[round(g, 2) for g in gaps]}, asked {asked}")


def test_a_job_with_a_10_s_poll_timeout_running_30_s_stays_alive_on_jg_watch_alone(
    client: Client, proxy: RecordingProxy
) -> None:
    # Five quiet seconds between changes: half the poll timeout each time.
    job = client.submit("demo.count", {"n": 6, "delay": 5}, poll_timeout=10, wait=0)

    watched = jg("watch", job.id, url=proxy.url, timeout=120)

    assert watched.returncode == 0, watched.stderr
    assert client.job(job.id).status == "DONE"
    polls = job_polls(proxy, job.id)
    assert max(b - a for a, b in itertools.pairwise(polls)) < 10
    assert "DONE 100% Done in" in watched.stderr


def test_a_submit_retried_across_a_dropped_connection_makes_one_job(
    server: LiveServer, proxy: RecordingProxy
) -> None:
    proxy.drop_next_post = True

    with Client(proxy.url, api_key="other-key") as client:
        before = sum(1 for _ in client.jobs())
        job = client.submit("demo.count", {"n": 2}, wait=0)
        after = [s.id for s in client.jobs()]

    posts = [hit for hit in proxy.hits if hit.method == "POST"]
    assert len(posts) == 2  # the first reached the server; its answer never came back
    assert len(after) == before + 1
    assert after[0] == job.id


@pytest.fixture(scope="module")
def outage_server(log_dir: Path) -> Iterator[tuple[RedisServer, LiveServer]]:
    """A gunicorn on a redis-server of its own, which the tests stop (and start again)."""
    with RedisServer() as redis_server:
        settings = make_test_settings(redis_server.url, queue="jobgate-outage")
        live = PatientLiveServer(settings, log_dir)
        try:
            yield redis_server, live
        finally:
            live.stop()


def test_with_redis_stopped_the_client_backs_off_and_raises_unavailable_at_its_deadline(
    outage_server: tuple[RedisServer, LiveServer],
) -> None:
    redis_server, live = outage_server
    redis_server.stop()

    with RecordingProxy(live.port) as proxy, Client(proxy.url, retry_timeout=8) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable) as unavailable:
            client.submit("demo.count", {"n": 1}, wait=0)
        elapsed = time.monotonic() - started

    assert unavailable.value.status == 503
    assert unavailable.value.code == "BACKEND_UNAVAILABLE"
    assert 8 <= elapsed < 8 + 10
    starts = [hit.at for hit in proxy.hits]
    assert all(hit.status == 503 and hit.retry_after for hit in proxy.hits)
    assert len(starts) >= 2
    # Each retry waited at least the Retry-After the 503 gave (5 s), or until the deadline.
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(
        gap >= min(5, 8 - (a - starts[0])) - 0.25 for gap, a in zip(gaps, starts[:-1], strict=True)
    )


def test_the_client_rides_out_a_short_redis_outage(
    outage_server: tuple[RedisServer, LiveServer],
) -> None:
    redis_server, live = outage_server
    redis_server.stop()
    comeback = threading.Timer(3, redis_server.start)

    with RecordingProxy(live.port) as proxy, Client(proxy.url, retry_timeout=30) as client:
        comeback.start()
        job = client.submit("demo.count", {"n": 1}, wait=0)
    comeback.join()

    assert job.status == "INITIALIZED"
    statuses = [hit.status for hit in proxy.hits]
    assert statuses[0] == 503 and statuses[-1] == 202


def test_download_of_a_100000_row_csv_keeps_memory_flat(client: Client, tmp_path: Path) -> None:
    job = client.submit("demo.count", {"n": 100_000}, wait=30)
    job.wait(timeout=60)
    target = tmp_path / "big.csv"

    tracemalloc.start()
    try:
        job.download(target)
        _, streamed_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        job.result()
        _, whole_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    size = target.stat().st_size
    with target.open("rb") as lines:
        assert sum(1 for _ in lines) == 100_001
    assert size > 1_500_000
    print(f"\ndownload: {size} B, peak {streamed_peak} B; result(): peak {whole_peak} B")
    assert streamed_peak < 512 * 1024, streamed_peak
    assert whole_peak > size  # the same result read whole: the measure can tell
