"""``AsyncClient`` and ``AsyncJob``: the asyncio shell around the flows of ``_core``.

Same surface as ``Client`` and ``Job``, each method a coroutine (``jobs``,
``iter_progress`` and ``rows`` are async iterators).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import IO, Any, Callable, TypeVar

import httpx

from jobgate_client import _core as core
from jobgate_client.models import JobType, Snapshot

T = TypeVar("T")
ProgressCallback = Callable[[Snapshot], None]


class AsyncClient:
    """``async with AsyncClient(url=None, api_key=None) as client: …``"""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry_timeout: float = 30.0,
        progress_interval: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = core.Config.build(url, api_key, timeout, retry_timeout, progress_interval)
        self.url = self.config.url
        self.policy = self.config.policy
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self.config.headers, transport=transport
        )

    # -- carrying effects out -------------------------------------------------

    async def _perform(self, request: core.Request) -> core.Outcome:
        sent_at = time.monotonic()
        built = self._http.build_request(**self.config.request_args(request))
        try:
            response = await self._http.send(built, stream=True)
        except httpx.TransportError as exc:
            return core.network_error(exc)
        if core.keeps_open(request, response.status_code):
            return core.Reply(response.status_code, response.headers, b"", sent_at, response)
        try:
            body = await response.aread()
        except httpx.TransportError as exc:
            return core.network_error(exc)
        finally:
            await response.aclose()
        return core.Reply(response.status_code, response.headers, body, sent_at)

    async def _iter(
        self, flow: core.Flow[Any], result: list[Any] | None = None
    ) -> AsyncIterator[Any]:
        """Carry out ``flow``'s effects; yield what it emits; its return value into ``result``."""
        outcome: core.Outcome = None
        while True:
            try:
                effect = flow.send(outcome)
            except StopIteration as stop:
                if result is not None:
                    result.append(stop.value)
                return
            outcome = None
            if isinstance(effect, core.Emit):
                yield effect.value
            elif isinstance(effect, core.Sleep):
                await asyncio.sleep(effect.seconds)
            else:
                outcome = await self._perform(effect)

    async def _run(self, flow: core.Flow[T], on_emit: Callable[[Any], None] | None = None) -> T:
        result: list[T] = []
        async for value in self._iter(flow, result):
            if on_emit is not None:
                on_emit(value)
        return result[0]

    # -- the API ----------------------------------------------------------------

    async def submit(
        self,
        type: str,
        params: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        wait: float | None = None,
        poll_timeout: int | None = None,
        retention: int | None = None,
        priority: int | None = None,
    ) -> AsyncJob:
        """Submit a job. The id is chosen here when not given, so retries never make two jobs.
        ``priority``: 0-9, 9 the most urgent, within the type's bounds (default: the type's)."""
        request = core.submit_request(
            type, params, id or core.new_id(), wait, poll_timeout, retention, priority
        )
        return AsyncJob(self, await self._run(core.submit(request, self.policy)))

    async def job(self, id: str) -> AsyncJob:
        """An existing job, read now (a poll)."""
        return AsyncJob(self, await self._run(core.open_job(id, self.policy)))

    def jobs(
        self, status: str | None = None, type: str | None = None, *, page_size: int = 100
    ) -> AsyncIterator[Snapshot]:
        """Every job of the caller, newest first, page after page."""
        return self._iter(core.list_jobs(self.policy, status, type, page_size))

    async def results(self, ids: Iterable[str]) -> dict[str, Any]:
        """Several jobs' results at once: id → ``{"status": …, "result" | "error": …}``."""
        return await self._run(core.results(ids, self.policy))

    async def job_types(self) -> list[JobType]:
        return await self._run(core.job_types(self.policy))

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncJob(core.JobView):
    """A submitted job. ``status``, ``progress`` and ``message`` are as last read."""

    def __init__(self, client: AsyncClient, state: core.JobState) -> None:
        super().__init__(state)
        self._client = client
        self._policy = client.policy

    async def refresh(self) -> Snapshot:
        return await self._client._run(core.poll(self._state, self._policy))

    async def wait(
        self, timeout: float | None = None, on_progress: ProgressCallback | None = None
    ) -> AsyncJob:
        flow = core.watch(self._state, self._policy, timeout, follow=on_progress is not None)
        await self._client._run(flow, on_progress)
        return self

    def iter_progress(self, timeout: float | None = None) -> AsyncIterator[Snapshot]:
        return self._client._iter(core.watch(self._state, self._policy, timeout, follow=True))

    async def result(self, timeout: float | None = None) -> Any:
        return await self._client._run(core.result(self._state, self._policy, timeout))

    async def rows(self, timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
        flow = core.result_stream(self._state, self._policy, "ndjson", timeout)
        reply = await self._client._run(flow)
        response: httpx.Response = reply.stream
        decoder = core.LineDecoder()
        try:
            async for chunk in response.aiter_bytes():
                for row in decoder.feed(chunk):
                    yield row
        finally:
            await response.aclose()
        for row in decoder.close():
            yield row

    async def download(
        self,
        path_or_file: str | os.PathLike[str] | IO[bytes],
        format: str = "csv",
        timeout: float | None = None,
    ) -> int:
        flow = core.result_stream(self._state, self._policy, format, timeout)
        reply = await self._client._run(flow)
        response: httpx.Response = reply.stream
        written = 0
        try:
            with core.writable(path_or_file) as out:
                async for chunk in response.aiter_bytes():
                    written += out.write(chunk)
        finally:
            await response.aclose()
        return written

    async def partial(self) -> Any:
        return await self._client._run(core.partial(self._state, self._policy))

    async def cancel(self) -> Snapshot | None:
        return await self._client._run(core.cancel(self._state, self._policy))
