"""``AsyncClient`` and ``AsyncJob``: the same surface as ``Client``, awaited."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from jobgate_client import (
    AsyncClient,
    JobExpired,
    JobFailed,
    JobNotFound,
    Snapshot,
    Unavailable,
    ValidationFailed,
    WaitTimeout,
)

from jobgate.redis_server import free_port
from tests.client.support import KEY
from tests.support.harness import LiveServer

pytestmark = pytest.mark.integration


def run(server: LiveServer, scenario: Callable[[AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with AsyncClient(server.url, api_key=KEY, retry_timeout=20) as client:
            return await scenario(client)

    return asyncio.run(main())


def test_submit_wait_with_progress_and_result(server: LiveServer) -> None:
    seen: list[Snapshot] = []

    async def scenario(client: AsyncClient) -> Any:
        job = await client.submit("demo.count", {"n": 20, "delay": 0.1}, wait=0)
        await job.wait(on_progress=seen.append)
        return job, await job.result()

    job, result = run(server, scenario)

    assert (job.status, job.progress) == ("DONE", 100)
    assert result["rows"][-1] == [19, 361]
    assert [s.progress for s in seen] == sorted(s.progress for s in seen)
    assert seen[-1].status == "DONE"


def test_iter_progress_rows_download_and_refresh(server: LiveServer) -> None:
    async def scenario(client: AsyncClient) -> Any:
        job = await client.submit("demo.count", {"n": 15, "delay": 0.1}, wait=0)
        changes = [s async for s in job.iter_progress()]
        rows = [row async for row in job.rows()]
        sink = io.BytesIO()
        await job.download(sink)
        return changes, rows, sink.getvalue(), await job.refresh()

    changes, rows, csv, refreshed = run(server, scenario)

    assert changes[-1].status == "DONE"
    assert rows == [{"step": i, "square": i * i} for i in range(15)]
    assert csv.startswith(b"step,square\r\n0,0\r\n")
    assert refreshed.status == "DONE"


def test_partial_cancel_and_timeout(server: LiveServer) -> None:
    async def scenario(client: AsyncClient) -> Any:
        job = await client.submit("demo.count", {"n": 100, "delay": 0.1}, wait=0)
        with pytest.raises(WaitTimeout):
            await job.wait(timeout=2)
        partial = await job.partial()
        cancelled = await job.cancel()
        deleted = await job.cancel()
        with pytest.raises(JobExpired):
            await job.refresh()
        return partial, cancelled, deleted

    partial, cancelled, deleted = run(server, scenario)

    assert 0 < len(partial["rows"]) < 100
    assert cancelled.error["code"] == "CANCELLED_BY_USER"
    assert deleted is None


def test_listing_results_types_and_errors(server: LiveServer) -> None:
    async def scenario(client: AsyncClient) -> Any:
        done = await client.submit("demo.count", {"n": 2}, wait=10)
        failed = await client.submit("demo.count", {"n": 2, "fail_at": 0}, wait=10)
        listed = [s.id async for s in client.jobs(type="demo.count", page_size=1)]
        found = await client.results([done.id, "nobody"])
        types = [t.name for t in await client.job_types()]
        again = await client.job(done.id)
        with pytest.raises(JobFailed):
            await failed.result()
        with pytest.raises(JobNotFound):
            await client.job("never-issued")
        with pytest.raises(ValidationFailed):
            await client.submit("demo.count", {"n": 0})
        return done, failed, listed, found, types, again

    done, failed, listed, found, types, again = run(server, scenario)

    assert listed[:2] == [failed.id, done.id]
    assert found == {"nobody": {"status": "NOT_FOUND"}, done.id: found[done.id]}
    assert found[done.id]["status"] == "DONE"
    assert "demo.count" in types
    assert again.id == done.id


def test_an_unreachable_server_raises_unavailable_at_the_deadline() -> None:
    async def main() -> None:
        async with AsyncClient(f"http://127.0.0.1:{free_port()}", retry_timeout=1.5) as client:
            await client.job_types()

    with pytest.raises(Unavailable):
        asyncio.run(main())
