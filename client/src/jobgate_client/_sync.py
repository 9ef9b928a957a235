"""``Client`` and ``Job``: the blocking shell around the flows of ``_core``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import IO, Any, Callable, TypeVar

import httpx

from jobgate_client import _core as core
from jobgate_client.models import JobType, Snapshot

T = TypeVar("T")
ProgressCallback = Callable[[Snapshot], None]


class Client:
    """A Jobgate API: ``Client(url=None, api_key=None)``, defaults from ``JOBGATE_URL`` and
    ``JOBGATE_API_KEY``. Use it as a context manager, or ``close()`` it."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry_timeout: float = 30.0,
        progress_interval: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = core.Config.build(url, api_key, timeout, retry_timeout, progress_interval)
        self.url = self.config.url
        self.policy = self.config.policy
        self._http = httpx.Client(
            base_url=self.url, headers=self.config.headers, transport=transport
        )

    # -- carrying effects out -------------------------------------------------

    def _perform(self, request: core.Request) -> core.Outcome:
        sent_at = time.monotonic()
        built = self._http.build_request(**self.config.request_args(request))
        try:
            response = self._http.send(built, stream=True)
        except httpx.TransportError as exc:
            return core.network_error(exc)
        if core.keeps_open(request, response.status_code):
            return core.Reply(response.status_code, response.headers, b"", sent_at, response)
        try:
            body = response.read()
        except httpx.TransportError as exc:
            return core.network_error(exc)
        finally:
            response.close()
        return core.Reply(response.status_code, response.headers, body, sent_at)

    def _iter(self, flow: core.Flow[Any], result: list[Any] | None = None) -> Iterator[Any]:
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
                time.sleep(effect.seconds)
            else:
                outcome = self._perform(effect)

    def _run(self, flow: core.Flow[T], on_emit: Callable[[Any], None] | None = None) -> T:
        result: list[T] = []
        for value in self._iter(flow, result):
            if on_emit is not None:
                on_emit(value)
        return result[0]

    # -- the API ----------------------------------------------------------------

    def submit(
        self,
        type: str,
        params: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        wait: float | None = None,
        poll_timeout: int | None = None,
        retention: int | None = None,
        priority: int | None = None,
    ) -> Job:
        """Submit a job. The id is chosen here when not given, so retries never make two jobs.
        ``priority``: 0-9, 9 the most urgent, within the type's bounds (default: the type's)."""
        request = core.submit_request(
            type, params, id or core.new_id(), wait, poll_timeout, retention, priority
        )
        return Job(self, self._run(core.submit(request, self.policy)))

    def job(self, id: str) -> Job:
        """An existing job, read now (a poll)."""
        return Job(self, self._run(core.open_job(id, self.policy)))

    def jobs(
        self, status: str | None = None, type: str | None = None, *, page_size: int = 100
    ) -> Iterator[Snapshot]:
        """Every job of the caller, newest first, page after page."""
        return self._iter(core.list_jobs(self.policy, status, type, page_size))

    def results(self, ids: Iterable[str]) -> dict[str, Any]:
        """Several jobs' results at once: id → ``{"status": …, "result" | "error": …}``."""
        return self._run(core.results(ids, self.policy))

    def job_types(self) -> list[JobType]:
        return self._run(core.job_types(self.policy))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Job(core.JobView):
    """A submitted job. ``status``, ``progress`` and ``message`` are as last read."""

    def __init__(self, client: Client, state: core.JobState) -> None:
        super().__init__(state)
        self._client = client
        self._policy = client.policy

    def refresh(self) -> Snapshot:
        """Read the job now (a plain poll: renews its heartbeat)."""
        return self._client._run(core.poll(self._state, self._policy))

    def wait(
        self, timeout: float | None = None, on_progress: ProgressCallback | None = None
    ) -> Job:
        """Until DONE or FAILED (no exception for FAILED); ``on_progress`` sees each change.

        Raises :class:`WaitTimeout` after ``timeout`` seconds; the job goes on.
        """
        flow = core.watch(self._state, self._policy, timeout, follow=on_progress is not None)
        self._client._run(flow, on_progress)
        return self

    def iter_progress(self, timeout: float | None = None) -> Iterator[Snapshot]:
        """Each change of status, percent or message, until the job ends."""
        return self._client._iter(core.watch(self._state, self._policy, timeout, follow=True))

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the end, then the result as JSON; :class:`JobFailed` if it failed."""
        return self._client._run(core.result(self._state, self._policy, timeout))

    def rows(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Wait for the end, then each row of a tabular result, streamed as NDJSON."""
        reply = self._client._run(core.result_stream(self._state, self._policy, "ndjson", timeout))
        response: httpx.Response = reply.stream
        decoder = core.LineDecoder()
        try:
            for chunk in response.iter_bytes():
                yield from decoder.feed(chunk)
        finally:
            response.close()
        yield from decoder.close()

    def download(
        self,
        path_or_file: str | os.PathLike[str] | IO[bytes],
        format: str = "csv",
        timeout: float | None = None,
    ) -> int:
        """Wait for the end, then stream the result to a file (constant memory); bytes written."""
        reply = self._client._run(core.result_stream(self._state, self._policy, format, timeout))
        response: httpx.Response = reply.stream
        written = 0
        try:
            with core.writable(path_or_file) as out:
                for chunk in response.iter_bytes():
                    written += out.write(chunk)
        finally:
            response.close()
        return written

    def partial(self) -> Any:
        """The rows published so far (the whole result once DONE), as JSON."""
        return self._client._run(core.partial(self._state, self._policy))

    def cancel(self) -> Snapshot | None:
        """Cancel a live job (its new snapshot), or delete a finished one (``None``)."""
        return self._client._run(core.cancel(self._state, self._policy))
