"""The /v1 blueprint: submit, poll, fetch the result, list job types."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any, cast

import orjson
from flask import Response, g, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from app import service
from app.context import jobgate
from app.documents import json_response, public_error, retry_after, status_document
from app.formats import choose_format, format_chunked, format_partial_chunks, format_result
from app.schemas import (
    MAX_WAIT,
    JobListSchema,
    JobSchema,
    JobTypeListSchema,
    ListQuery,
    PollQuery,
    ProblemSchema,
    ResultQuery,
    ResultsBodySchema,
    ResultsQuery,
)
from workers import registry
from workers.errors import (
    JobExpired,
    JobFailed,
    JobNotFound,
    MalformedJSON,
    UnsupportedMediaType,
    ValidationFailed,
)
from workers.keys import JobKeys, valid_id
from workers.queues import DEFAULT_QUEUE_NAME
from workers.store import CancelOutcome, CreateOutcome, JobRecord
from workers.store.chunks import manifest_kind
from workers.store.values import new_id

log = logging.getLogger(__name__)

blp = Blueprint("jobs", __name__, url_prefix="/v1", description="Submit, poll and fetch jobs.")

RESULTS_BODY = ResultsBodySchema()

HEADERS = {
    "Location": {
        "description": "The job's status URL, absolute.",
        "schema": {"type": "string", "format": "uri"},
    },
    "Retry-After": {"description": "Seconds until the next poll.", "schema": {"type": "integer"}},
    "Idempotent-Replayed": {
        "description": "`true` when an earlier submit with this id is answered again.",
        "schema": {"type": "string"},
    },
}
SUBMIT_REQUEST_REF = "#/components/schemas/SubmitRequest"
RESULT_ENTRY_REF = "#/components/schemas/ResultEntry"
RESULTS_REQUEST_REF = "#/components/schemas/ResultsRequest"
PREFER = {
    "in": "header",
    "name": "Prefer",
    "required": False,
    "schema": {"type": "string"},
    "description": "`respond-async` (wait 0) or `wait=N` (RFC 7240); "
    "used when the body has no wait.",
}


def _problems(*statuses: int) -> Any:
    """Document the problem+json answers of an operation."""

    def decorate(func: Any) -> Any:
        for status in statuses:
            func = blp.alt_response(
                status, schema=ProblemSchema, content_type="application/problem+json"
            )(func)
        return func

    return decorate


def job_keys(job_id: str) -> JobKeys:
    """The caller's job; an id we could never have issued is simply unknown."""
    if not valid_id(job_id):
        raise JobNotFound(f"No job {job_id!r}.")
    return JobKeys(g.tenant, job_id)


def request_body() -> bytes:
    """The whole body, or 413 when it is over JOBGATE_MAX_BODY however it was sent.

    With Content-Length, werkzeug refuses a body over MAX_CONTENT_LENGTH before
    reading it. A chunked body (no length) is read through a LimitedStream that
    stops *at* the limit and returns what it read as if it were the whole body,
    so a padded submit plus any amount more was cut off and then accepted.
    create_app sets MAX_CONTENT_LENGTH one byte past the limit: a body that
    reaches that byte is over the limit, one that ends at the limit is whole.
    """
    data = request.get_data(cache=False)
    if len(data) > jobgate().settings.max_body:
        raise RequestEntityTooLarge()
    return data


def read_json_body() -> Any:
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise UnsupportedMediaType("The body must be JSON (Content-Type: application/json).")
    try:
        return orjson.loads(request_body())
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"The body is not valid JSON: {exc}") from None


def preferred_wait(prefer: str) -> tuple[float, str] | None:
    """The wait asked for by a Prefer header (RFC 7240), and what was applied."""
    for token in prefer.replace(";", ",").split(","):
        name, _, value = token.strip().partition("=")
        name = name.strip().lower()
        if name == "respond-async":
            return 0.0, "respond-async"
        if name == "wait":
            try:
                seconds = min(MAX_WAIT, max(0.0, float(value.strip().strip('"'))))
            except ValueError:
                continue
            return seconds, f"wait={seconds:g}"
    return None


def absolute(path: str) -> str:
    """``path`` as an absolute URL on the host the client asked: off-the-shelf
    LRO clients (azure-core's pollers) do not resolve a relative Location.
    Scheme and host are the request's own, or those forwarded by trusted
    proxies (JOBGATE_TRUSTED_PROXIES, via ProxyFix); ``path`` already holds
    any script root."""
    return request.host_url.rstrip("/") + path


def job_response(
    record: JobRecord, *, created: bool = False, headers: dict[str, str] | None = None
) -> Response:
    """The status document with the status code and headers of its state."""
    jg = jobgate()
    doc = status_document(record, expose_tracebacks=jg.settings.expose_tracebacks)
    headers = dict(headers or {})
    if created:
        headers["Location"] = absolute(doc["links"]["self"])
    if record.status.terminal:
        return json_response(doc, 201 if created else 200, headers)
    headers["Retry-After"] = str(retry_after(record))
    return json_response(doc, 202, headers)


@blp.route("/jobs")
class Jobs(MethodView):
    init_every_request = False  # no state: one instance serves every request

    @blp.arguments(ListQuery(), location="query", as_kwargs=True)
    @blp.alt_response(200, schema=JobListSchema, description="The caller's jobs, newest first.")
    @_problems(401, 422, 503)
    def get(self, limit: int, **filters: Any) -> Response:
        """List the caller's jobs, newest first (not a poll: heartbeats are not renewed)."""
        records, cursor = service.list_jobs(
            jobgate().store,
            g.tenant,
            limit,
            filters.get("cursor"),
            filters.get("status"),
            filters.get("type"),
        )
        expose = jobgate().settings.expose_tracebacks
        jobs = [status_document(r, expose_tracebacks=expose) for r in records]
        return json_response({"jobs": jobs, "next_cursor": cursor})

    @blp.doc(
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": {"$ref": SUBMIT_REQUEST_REF}}},
        },
        parameters=[PREFER],
    )
    @blp.alt_response(201, schema=JobSchema, description="Finished within wait.", headers=HEADERS)
    @blp.alt_response(
        202, schema=JobSchema, description="Accepted; poll Location.", headers=HEADERS
    )
    @_problems(400, 401, 409, 413, 415, 422, 429, 503)
    def post(self) -> Response:
        """Submit a job."""
        return submit_job()

    def dispatch_request(self, **kwargs: Any) -> Response:
        # POST: straight to the view's work, past flask-smorest's decorators,
        # which only document it (each layer a call and an ensure_sync).
        if request.method == "POST":
            return submit_job()
        return cast(Response, super().dispatch_request(**kwargs))


def submit_job() -> Response:
    """POST /v1/jobs: validate, create, enqueue, maybe wait, answer."""
    jg = jobgate()
    data = load_submit(read_json_body())
    job_type = registry.get_available(data["type"], jg.settings)
    assert job_type is not None  # the per-type schema only admits registered types
    params = job_type.params_schema.dump(data["params"])
    params_json = service.stored_params(params, jg.settings.max_params_bytes)
    callback = data.get("callback")
    if callback is not None and jg.settings.webhook_secret(g.tenant) is None:
        raise ValidationFailed(
            {"callback": ["No webhook secret for this tenant (JOBGATE_WEBHOOK_SECRETS)."]}
        )

    wait, applied = data.get("wait"), None
    if wait is None:
        wait, applied = preferred_wait(request.headers.get("Prefer", "")) or (
            jg.settings.default_wait,
            None,
        )
    keys = JobKeys(g.tenant, data.get("id") or new_id())
    outcome, created = service.create_job(
        jg.store,
        keys,
        job_type,
        params_json,
        poll_timeout=data["poll_timeout"],
        retention=data["retention"],
        watch=wait > 0,
        request_id=g.request_id,
        priority=data["priority"],
        callback=callback,
    )
    if outcome is CreateOutcome.CREATED:
        jg.enqueue(keys, job_type, data["priority"])
    record = created
    if wait > 0:
        # A replay's wait claims a slot like any other: one tenant's
        # replays cannot park threads past its share either.
        with jg.wait_slots.claim(g.tenant) as may_wait:
            if may_wait:
                service.wait_until_terminal(jg.store, keys, "0-0", wait)
                record = None
    if record is None:  # waited, or an idempotent replay: read it as it is now
        record = jg.store.read(keys, poll=True, inline_max=jg.settings.inline_result_bytes)
    headers = {}
    if outcome is CreateOutcome.EXISTS:
        headers["Idempotent-Replayed"] = "true"
    if applied:
        headers["Preference-Applied"] = applied
    return job_response(record, created=True, headers=headers)


def _field_errors(exc: ValidationError) -> dict[str, Any]:
    messages = exc.messages
    return messages if isinstance(messages, dict) else {"_schema": messages}


def load_submit(body: Any) -> dict[str, Any]:
    """Validate a submit body with the schema of the job type it names."""
    if not isinstance(body, dict):
        raise ValidationFailed({"_schema": ["The body must be a JSON object."]})
    name = body.get("type")
    if name is None:
        raise ValidationFailed({"type": ["Missing data for required field."]})
    schema = jobgate().submit_loaders.get(name) if isinstance(name, str) else None
    if schema is None:
        known = ", ".join(sorted(jobgate().submit_loaders))
        raise ValidationFailed({"type": [f"Not a registered job type; registered: {known}."]})
    try:
        data: dict[str, Any] = schema.load(body)
    except ValidationError as exc:
        raise ValidationFailed(_field_errors(exc)) from None
    return data


@blp.route("/jobs/<job_id>")
class Job(MethodView):
    init_every_request = False  # no state: one instance serves every request

    @blp.arguments(PollQuery(), location="query", as_kwargs=True)
    @blp.alt_response(200, schema=JobSchema, description="DONE or FAILED.")
    @blp.alt_response(202, schema=JobSchema, description="INITIALIZED or RUNNING.", headers=HEADERS)
    @_problems(401, 404, 410, 422, 503)
    def get(self, job_id: str, wait: float) -> Response:
        """Poll a job: renews its heartbeat and returns its status document."""
        return poll_job(job_id, wait)

    def dispatch_request(self, **kwargs: Any) -> Response:
        # A poll without a query string (wait 0, nearly every poll) goes
        # straight to the view's work: PollQuery's only field has its default,
        # so webargs would only say so, and flask-smorest's other decorators
        # only document the operation. Any query string takes the full path,
        # with its validation and its errors.
        if request.method == "GET" and not request.query_string:
            return poll_job(kwargs["job_id"], 0.0)
        return cast(Response, super().dispatch_request(**kwargs))

    @blp.alt_response(200, schema=JobSchema, description="Cancelled: FAILED/CANCELLED_BY_USER.")
    @blp.alt_response(204, description="Was terminal: status and result deleted (410 from now).")
    @_problems(401, 404, 410, 503)
    def delete(self, job_id: str) -> Response:
        """Cancel a live job, or delete a finished one."""
        jg = jobgate()
        keys = job_keys(job_id)
        outcome = jg.store.cancel(keys)
        if outcome is CancelOutcome.MISSING:
            raise JobNotFound(f"No job {job_id!r}.")
        if outcome is CancelOutcome.GONE:
            raise JobExpired(f"Job {job_id!r} has expired; its status and result are gone.")
        if outcome is CancelOutcome.DELETED:
            return Response(status=204)
        return job_response(jg.store.read(keys, poll=False, inline_max=0))


def poll_job(job_id: str, wait: float) -> Response:
    """GET /v1/jobs/{id}: read (a poll), maybe wait for a change, answer."""
    jg = jobgate()
    keys = job_keys(job_id)
    inline = jg.settings.inline_result_bytes
    record = jg.store.read(keys, poll=True, inline_max=inline, watch=wait > 0)
    if wait > 0 and not record.status.terminal:
        with jg.wait_slots.claim(g.tenant) as may_wait:
            changed = may_wait and jg.store.wait_for_event(keys, record.last_event_id, wait)
        if changed:
            record = jg.store.read(keys, poll=True, inline_max=inline)
    return job_response(record)


@blp.route("/jobs/results")
class JobResults(MethodView):
    @blp.arguments(ResultsQuery(), location="query", as_kwargs=True)
    @blp.alt_response(
        200,
        description="Per id: status and result or error; NOT_FOUND for unknown ids.",
        schema={"type": "object", "additionalProperties": {"$ref": RESULT_ENTRY_REF}},
    )
    @_problems(401, 422, 503)
    def get(self, ids: str) -> Response:
        """Several jobs' results at once (each read is a poll)."""
        wanted = list(dict.fromkeys(i for i in ids.split(",") if i))
        return json_response(service.several_results(jobgate().store, g.tenant, wanted))

    @blp.doc(
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": {"$ref": RESULTS_REQUEST_REF}}},
        }
    )
    @blp.alt_response(
        200,
        description="The same document as the GET: per id, status and result or error.",
        schema={"type": "object", "additionalProperties": {"$ref": RESULT_ENTRY_REF}},
    )
    @_problems(400, 401, 413, 415, 422, 503)
    def post(self) -> Response:
        """Several jobs' results at once, the ids in a JSON body (``{"ids": [...]}``)."""
        body = read_json_body()
        try:
            data = RESULTS_BODY.load(body) if isinstance(body, dict) else None
        except ValidationError as exc:
            raise ValidationFailed(_field_errors(exc)) from None
        if data is None:
            raise ValidationFailed({"_schema": ["The body must be a JSON object."]})
        wanted = list(dict.fromkeys(data["ids"]))
        return json_response(service.several_results(jobgate().store, g.tenant, wanted))


@blp.route("/jobs/<job_id>/result")
class JobResult(MethodView):
    @blp.arguments(ResultQuery(), location="query", as_kwargs=True)
    @blp.alt_response(
        200,
        description="The result, as json, ndjson or csv (Accept or ?format=); a result "
        "over 1 MiB is streamed chunk by chunk (no Content-Length).",
        headers={
            "Jobgate-Truncated": {
                "description": "`true` when the job cut its result short.",
                "schema": {"type": "string"},
            }
        },
    )
    @blp.alt_response(204, description="Not finished yet.", headers=HEADERS)
    @_problems(400, 401, 404, 406, 410, 422, 503)
    def get(self, job_id: str, partial_rows: bool, format: str | None = None) -> Response:
        """Fetch a job's result (also a poll); ``?partial=true`` while it runs."""
        jg = jobgate()
        keys = job_keys(job_id)
        record = jg.store.read(keys, poll=True, inline_max=None)
        fmt = choose_format(format, request.headers.get("Accept"))
        if not record.status.terminal:
            if partial_rows:
                return partial_response(record, fmt)
            return Response(status=204, headers={"Retry-After": str(retry_after(record))})
        if record.error is not None:
            error = public_error(record.error, expose_tracebacks=jg.settings.expose_tracebacks)
            raise JobFailed(error.get("message", "The job failed."), error=error)
        job_type = registry.get(record.type)
        type_tabular = job_type.tabular if job_type is not None else True
        headers = {"Jobgate-Truncated": "true"} if record.truncated else {}
        if record.result_chunks:
            count = record.result_chunks
            body, content_type = format_chunked(
                manifest_kind(record.result_json or ""),
                lambda: jg.store.result_chunks(keys, count),
                fmt,
                type_tabular,
            )
            return Response(stream_chunks(body), content_type=content_type, headers=headers)
        body, content_type = format_result(record.result_json or "null", fmt, type_tabular)
        return Response(body, content_type=content_type, headers=headers)


def stream_chunks(body: Iterable[bytes]) -> Iterator[bytes]:
    """A chunked result's body; a chunk gone mid-way (deleted, expired) ends
    the response abruptly, so the client sees a broken transfer, not a short
    body that looks whole."""
    try:
        yield from body
    except JobExpired:
        log.warning("a result's chunks went away while it was sent")
        raise


def partial_response(record: JobRecord, fmt: str) -> Response:
    job_type = registry.get(record.type)
    columns = list(job_type.columns) if job_type and job_type.columns else None
    count, store = max(1, record.partial_chunks), jobgate().store
    body, content_type = format_partial_chunks(
        lambda: store.partial_chunks(record.keys, count), fmt, columns
    )
    headers = {"Jobgate-Partial": "true", "Retry-After": str(retry_after(record))}
    return Response(body, content_type=content_type, headers=headers)


@blp.route("/job-types")
class JobTypes(MethodView):
    @blp.alt_response(200, schema=JobTypeListSchema, description="Registered job types.")
    @_problems(401)
    def get(self) -> Response:
        """List the registered job types."""
        default = jobgate().settings.max_runtime
        types = [
            {
                "name": t.name,
                "description": t.description,
                "params_schema": t.params_json_schema(),
                "max_runtime": t.runtime_limit(default),
                "max_attempts": t.max_attempts,
                "tabular": t.tabular,
                "queue": t.queue or DEFAULT_QUEUE_NAME,
                "priority": t.priority,
                "priorities": list(t.priorities),
            }
            for t in registry.available_types(jobgate().settings)
        ]
        return json_response({"job_types": types})
