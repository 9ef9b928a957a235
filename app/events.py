"""``GET /v1/jobs/{id}/events``: a job's status documents as Server-Sent Events.

One event on connect (the current status document), one per change of
status, progress or message, the terminal one, then the stream ends. Each
event's ``id:`` is the job's change count (the record's ``ev``, counted by
every script that changes the job, workers/lua/_prelude.lua), so ids rise by
one per change. A client that reconnects with ``Last-Event-ID: n`` gets the
changes after ``n`` from the job's events stream, which keeps the last
EVENTS_KEPT of them while anyone watches; one that missed more (or came back
after the stream's TTL) gets the current document, its id telling how many it
missed.

Threads: a stream holds a gthread thread, so it claims a wait slot like a long
poll (app/context.py WaitSlots): short requests always find a thread. A stream
that finds no free slot sends what is new and ends with a ``retry:`` hint;
EventSource reconnects on its own, with Last-Event-ID. While it waits, a stream
blocks on the job's events stream for at most one tick (the keep-alive
interval, or a third of the job's poll_timeout), then gives the Redis
connection back, renews the heartbeat (a poll), and looks whether the client
is still there: a client that went away stops renewing within one tick.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
from flask import Response, g, request, stream_with_context
from flask.views import MethodView

from app.context import WaitSlots, jobgate
from app.documents import as_of, retry_after, status_document
from app.jobs import _problems, blp, job_keys
from workers.config import Settings
from workers.errors import BackendUnavailable, JobExpired, JobNotFound
from workers.keys import JobKeys
from workers.store import JobRecord, JobStore

MEDIA_TYPE = "text/event-stream"
# Set when this process begins a graceful shutdown (jobgate/server.py): open
# streams end at their next tick with ``retry:``, and their clients reconnect
# to another process, instead of holding the shutdown for its whole timeout.
CLOSING = threading.Event()
# What a stream ended by a shutdown or a Redis outage tells EventSource:
# reconnect in 1 s.
RETRY_SOON = b"retry: 1000\n\n"
KEEPALIVE = b": keep-alive\n\n"
EXAMPLE = (
    'id: 4\ndata: {"id":"01JDX3Q9W2T6Z8M4N5P7R2S3V4","status":"RUNNING","progress":56,...}\n\n'
    ": keep-alive\n\n"
    'id: 5\ndata: {"id":"01JDX3Q9W2T6Z8M4N5P7R2S3V4","status":"DONE","progress":100,...}\n\n'
)

# A text/event-stream schema describes one event (OpenAPI 3.2's itemSchema;
# schemathesis validates each event of a stream against it): its fields as
# the SSE standard parses them.
EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "The job's change count."},
        "event": {"type": "string", "description": "Not sent: `message`, EventSource's default."},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "The status document, as `GET /v1/jobs/{id}` answers it.",
        },
        "retry": {"type": "integer", "description": "Sent last when the stream ends early."},
    },
    "example": {"id": "4", "data": '{"id":"01JDX3Q9W2T6Z8M4N5P7R2S3V4","status":"RUNNING"}'},
    "description": "The stream, on the wire:\n\n```\n" + EXAMPLE + "```",
}
LAST_EVENT_ID = {
    "in": "header",
    "name": "Last-Event-ID",
    "required": False,
    "schema": {"type": "string"},
    "description": "The id of the last event received: the stream resumes after it.",
}
EVENTS_DOC = (
    "`text/event-stream`: one event per change of the job, each with `id:` (the "
    "job's change count) and `data:` (the status document, as `GET /v1/jobs/{id}`); "
    "`: keep-alive` comments while nothing changes; the stream ends after the "
    "terminal event."
)


def encode(record: JobRecord, settings: Settings) -> bytes:
    doc = status_document(record, expose_tracebacks=settings.expose_tracebacks)
    return b"id: %d\ndata: %s\n\n" % (record.changes, orjson.dumps(doc))


def entry_record(record: JobRecord, entry: dict[str, str]) -> JobRecord:
    """The record as an events stream entry (an earlier change) shows it."""
    return as_of(
        record, entry["s"], int(entry.get("p", 0)), entry.get("m", ""), int(entry.get("v", 0))
    )


def last_event_id() -> int | None:
    raw = request.headers.get("Last-Event-ID", "").strip()
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def client_gone(sock: Any) -> bool:
    """The client closed its end (a readable socket with nothing to read)."""
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class Streamer:
    """The events of one stream, from a first record read (a poll)."""

    def __init__(self, store: JobStore, settings: Settings, keys: JobKeys, sent: int) -> None:
        self.store = store
        self.settings = settings
        self.keys = keys
        self.sent = sent  # the id of the last event the client has
        self.after = "0-0"  # the events stream's entry the next read starts after
        self.ended = False

    def catch_up(self, record: JobRecord) -> Iterator[bytes]:
        """Events for the changes after ``self.sent`` up to ``record``'s: the
        kept ones between, then the record itself."""
        if record.changes <= self.sent:
            return
        for entry_id, entry in self.store.events_after(self.keys, self.after, 0):
            change = int(entry.get("v", 0))
            if change > record.changes:
                break  # newer than the record: the next round
            self.after = entry_id
            if self.sent < change < record.changes:
                self.sent = change
                yield encode(entry_record(record, entry), self.settings)
        self.sent = record.changes
        self.ended = record.status.terminal
        yield encode(record, self.settings)

    def read(self) -> JobRecord | None:
        """A poll of the job (renews its heartbeat); None once it has gone."""
        try:
            return self.store.read(
                self.keys, poll=True, inline_max=self.settings.inline_result_bytes, watch=True
            )
        except (JobNotFound, JobExpired):
            return None

    def follow(self, sock: Any, tick: float) -> Iterator[bytes]:
        """Changes as they come, keep-alives between, until the end or the client leaves."""
        keepalive = self.settings.sse_keepalive
        written = time.monotonic()
        while not self.ended:
            self.store.events_after(self.keys, self.after, tick)
            if client_gone(sock):
                return
            if CLOSING.is_set():
                yield RETRY_SOON
                return
            record = self.read()
            if record is None:
                return
            sent_before = self.sent
            yield from self.catch_up(record)
            if self.sent != sent_before:
                written = time.monotonic()
            elif time.monotonic() - written >= keepalive:
                written = time.monotonic()
                yield KEEPALIVE


def stream(
    streamer: Streamer, record: JobRecord, slots: WaitSlots, tenant: str, sock: Any
) -> Iterator[bytes]:
    yield from streamer.catch_up(record)
    if streamer.ended:
        return
    with contextlib.ExitStack() as stack:
        if not stack.enter_context(slots.claim(tenant)):
            # No thread to spare: what is new now, then reconnect later.
            yield b"retry: %d\n\n" % (retry_after(record) * 1000)
            return
        tick = streamer.settings.sse_keepalive
        if record.poll_timeout > 0:
            tick = min(tick, record.poll_timeout / 3)
        try:
            yield from streamer.follow(sock, tick)
        except BackendUnavailable:
            # Redis went away mid-stream: the client reconnects and resumes
            # (its reconnect gets the 503 until Redis is back).
            yield RETRY_SOON


@blp.route("/jobs/<job_id>/events")
class JobEvents(MethodView):
    @blp.doc(parameters=[LAST_EVENT_ID])
    @blp.alt_response(
        200,
        description=EVENTS_DOC,
        content_type=MEDIA_TYPE,
        schema=EVENT_SCHEMA,
    )
    @blp.alt_response(204, description="Resumed after the terminal event: nothing more.")
    @_problems(401, 404, 410, 503)
    def get(self, job_id: str) -> Response:
        """Watch a job: Server-Sent Events of its status document (renews its
        heartbeat while connected)."""
        jg = jobgate()
        keys = job_keys(job_id)
        record = jg.store.read(
            keys, poll=True, inline_max=jg.settings.inline_result_bytes, watch=True
        )
        resume = last_event_id()
        if resume is not None and resume > record.changes:
            resume = None  # not an id of this job's: start afresh
        if resume is not None and resume == record.changes and record.status.terminal:
            return Response(status=204)  # tells EventSource to stop reconnecting
        if resume is None:  # the current document only
            streamer = Streamer(jg.store, jg.settings, keys, record.changes - 1)
            streamer.after = record.last_event_id
        else:
            streamer = Streamer(jg.store, jg.settings, keys, resume)
        sock = request.environ.get("gunicorn.socket")
        body = stream(streamer, record, jg.wait_slots, g.tenant, sock)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Response(stream_with_context(body), mimetype=MEDIA_TYPE, headers=headers)
