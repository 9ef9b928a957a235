"""marshmallow schemas: the single description of each request and response.

Requests are validated with them; ``/openapi.json`` is generated from them.
The bounds of ``wait``, ``poll_timeout`` and ``retention`` are the operator's
settings, so the submit schema is made per app from its ``Settings``.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from app.formats import FORMATS
from workers import limits
from workers.config import Settings
from workers.keys import ID_PATTERN, valid_id
from workers.registry import JobType
from workers.states import DEFAULT_WEBHOOK_EVENTS, CallbackState, ErrorCode, Status, WebhookEvent
from workers.webhooks import UnsafeCallback, check_url

MAX_WAIT = limits.MAX_WAIT_S
MAX_POLL_WAIT = limits.MAX_POLL_WAIT_S
MAX_LIST_LIMIT = 100
MAX_RESULTS_IDS = 100


# /v1/jobs/results is a route, so no job may be called "results"; "." and
# ".." are path segments that clients normalise away (RFC 3986 §5.2.4):
# /v1/jobs/./result would reach /v1/jobs/result, another job's document.
RESERVED_IDS = ("results", ".", "..")


def _job_id(value: str) -> None:
    if not valid_id(value):
        raise ValidationError("An id is 1-64 characters of A-Z a-z 0-9 . _ -")
    if value in RESERVED_IDS:
        raise ValidationError(f"{value!r} is reserved: it names a route or a path segment.")


def _bounded_clock(low: int, high: int, *, allow_zero: bool, name: str) -> Any:
    def check(value: int) -> None:
        if allow_zero and value == 0:
            return
        if not low <= value <= high:
            zero = " or 0 (no heartbeat)" if allow_zero else ""
            raise ValidationError(f"{name} must be between {low} and {high}{zero}.")

    return check


def _callback_schema(settings: Settings) -> type[Schema]:
    """``callback: {url, events}``, its URL through the SSRF guard at submit."""

    def safe_url(url: str) -> None:
        try:
            check_url(url, settings.webhook_allow_hosts)
        except UnsafeCallback as exc:
            raise ValidationError(str(exc)) from None

    class Callback(Schema):
        url = fields.String(
            required=True,
            validate=[validate.Length(1, limits.CALLBACK_URL_MAX), safe_url],
            metadata={
                "format": "uri",
                "description": "Where the events are POSTed: https, to a public address "
                "(JOBGATE_WEBHOOK_ALLOW_HOSTS may allow others, and http).",
            },
        )
        events = fields.List(
            fields.String(validate=validate.OneOf([e.value for e in WebhookEvent])),
            load_default=lambda: [e.value for e in DEFAULT_WEBHOOK_EVENTS],
            validate=validate.Length(min=1),
            metadata={"description": "Events to deliver (default done and failed)."},
        )

    return Callback


def _submit_base(settings: Settings) -> type[Schema]:
    """The POST /v1/jobs fields every job type shares, with this deployment's bounds."""

    class SubmitCommon(Schema):
        @pre_load
        def no_heartbeat_for_callbacks(self, data: Any, **_: Any) -> Any:
            """A job with a callback is not polled: no heartbeat unless asked."""
            if isinstance(data, dict) and "callback" in data and "poll_timeout" not in data:
                return {**data, "poll_timeout": 0}
            return data

        callback = fields.Nested(
            _callback_schema(settings),
            metadata={
                "description": "A signed webhook (Standard Webhooks) per event; without "
                "poll_timeout in the request, the job runs without a heartbeat."
            },
        )
        id = fields.String(
            validate=_job_id,
            metadata={
                "description": "Client-chosen id; makes the submit idempotent.",
                "pattern": ID_PATTERN,
                "not": {"enum": list(RESERVED_IDS)},
            },
        )
        wait = fields.Float(
            validate=validate.Range(0, MAX_WAIT),
            allow_nan=False,
            metadata={
                "description": "Seconds this request may wait for the job to finish "
                f"(default {settings.default_wait:g})."
            },
        )
        poll_timeout = fields.Integer(
            strict=True,
            load_default=settings.poll_timeout_default,
            validate=_bounded_clock(
                settings.poll_timeout_min,
                settings.poll_timeout_max,
                allow_zero=True,
                name="poll_timeout",
            ),
            metadata={
                "description": "Seconds without a poll before the job is cancelled "
                f"({settings.poll_timeout_min}-{settings.poll_timeout_max}, 0 = no heartbeat).",
                # "0, or min..max": a rule the validator above enforces and
                # the document must state, so clients (and fuzzers) see it.
                "anyOf": [
                    {"enum": [0]},
                    {"minimum": settings.poll_timeout_min, "maximum": settings.poll_timeout_max},
                ],
            },
        )
        retention = fields.Integer(
            strict=True,
            load_default=settings.retention_default,
            validate=validate.Range(settings.retention_min, settings.retention_max),
            metadata={
                "description": "Seconds a finished job stays readable "
                f"({settings.retention_min}-{settings.retention_max})."
            },
        )

    return SubmitCommon


def _has_required_fields(schema: type[Schema]) -> bool:
    return any(f.required for f in schema().fields.values())


def submit_schemas(settings: Settings, job_types: list[JobType]) -> dict[str, type[Schema]]:
    """One submit schema per job type: its name as ``type``, its params schema
    as ``params``. They validate the request and, as a discriminated oneOf,
    are the request body of POST /v1/jobs in the OpenAPI document."""
    base = _submit_base(settings)
    schemas: dict[str, type[Schema]] = {}
    for job_type in job_types:
        if _has_required_fields(job_type.params):
            params = fields.Nested(job_type.params, required=True)
        else:
            params = fields.Nested(job_type.params, load_default=dict)
        low, high = job_type.priorities
        attrs = {
            "type": fields.String(required=True, validate=validate.OneOf([job_type.name])),
            "params": params,
            "priority": fields.Integer(
                strict=True,
                load_default=job_type.priority,
                validate=validate.Range(low, high),
                metadata={
                    "description": f"{low}-{high} for this type, 9 the most urgent "
                    f"(default {job_type.priority}): a waiting job of a higher priority "
                    "in the same queue starts first."
                },
            ),
        }
        schemas[job_type.name] = type(f"Submit_{job_type.name}", (base,), attrs)
    return schemas


def submit_body_doc(schemas: dict[str, type[Schema]]) -> dict[str, Any]:
    """The OpenAPI request body: one of the per-type schemas, by ``type``."""
    refs = {name: f"#/components/schemas/{schema.__name__}" for name, schema in schemas.items()}
    return {
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": "type", "mapping": refs},
    }


class PollQuery(Schema):
    wait = fields.Float(
        load_default=0.0,
        validate=validate.Range(0, MAX_POLL_WAIT),
        allow_nan=False,
        metadata={
            "description": "Long poll: answer when status or progress changes, or after wait s."
        },
    )


class ResultQuery(Schema):
    format = fields.String(
        validate=validate.OneOf(FORMATS),
        metadata={"description": "json (default), ndjson or csv; wins over Accept."},
    )
    # Named apart from Schema.partial; the query parameter is still ?partial=.
    partial_rows = fields.Boolean(
        data_key="partial",
        load_default=False,
        metadata={"description": "While RUNNING: the rows published so far."},
    )


class ListQuery(Schema):
    status = fields.String(validate=validate.OneOf([s.value for s in Status]))
    type = fields.String(validate=validate.Length(1, 200))
    limit = fields.Integer(load_default=20, validate=validate.Range(1, MAX_LIST_LIMIT))
    # Opaque to clients; in fact a position in the tenant's index, so any
    # string of this form is a valid place to continue from.
    cursor = fields.String(
        validate=validate.Regexp(r"^[0-9]{1,19}$"),
        metadata={"description": "Opaque: the next_cursor of the previous page."},
    )


class ResultsQuery(Schema):
    ids = fields.String(
        required=True,
        # At most MAX_RESULTS_IDS comma-separated entries; empty ones are ignored.
        validate=validate.Regexp(rf"^[^,]{{0,64}}(,[^,]{{0,64}}){{0,{MAX_RESULTS_IDS - 1}}}$"),
        metadata={"description": f"Comma-separated job ids, at most {MAX_RESULTS_IDS}."},
    )


class ResultsBodySchema(Schema):
    """POST /v1/jobs/results: the ids in a body, where a URL would be too long."""

    ids = fields.List(
        fields.String(validate=validate.Length(1, 64)),
        required=True,
        validate=validate.Length(max=MAX_RESULTS_IDS),
        metadata={"description": f"Job ids, at most {MAX_RESULTS_IDS}."},
    )


class JobErrorSchema(Schema):
    id = fields.String()
    code = fields.String(validate=validate.OneOf([c.value for c in ErrorCode]))
    message = fields.String()
    retryable = fields.Boolean()
    details = fields.Dict()


class LinksSchema(Schema):
    self = fields.String()
    result = fields.String()


class CallbackStateSchema(Schema):
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)
    state = fields.String(
        required=True,
        validate=validate.OneOf([s.value for s in CallbackState]),
        metadata={"description": "Of the latest event's delivery."},
    )
    attempts = fields.Integer(required=True)
    last_status = fields.Integer(metadata={"description": "HTTP status of the last attempt."})


class JobSchema(Schema):
    """The status document (docs/api.md §2): absent fields do not apply."""

    id = fields.String(required=True)
    type = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf([s.value for s in Status]))
    progress = fields.Integer(required=True, validate=validate.Range(0, 100))
    message = fields.String(required=True)
    created_at = fields.String(required=True, metadata={"format": "date-time"})
    started_at = fields.String(metadata={"format": "date-time"})
    started = fields.String(metadata={"example": "Mon Nov 23 10:24:15 GMT 2026"})
    queue_position = fields.Integer(metadata={"description": "While INITIALIZED: 0 is next."})
    attempt = fields.Integer()
    poll_timeout = fields.Integer(required=True)
    poll_deadline = fields.String(metadata={"format": "date-time"})
    finished_at = fields.String(metadata={"format": "date-time"})
    expires_at = fields.String(metadata={"format": "date-time"})
    result = fields.Raw(
        metadata={
            "description": "Inline when DONE and at most JOBGATE_INLINE_RESULT_BYTES "
            "(64 KiB), never when kept in chunks (over 1 MiB): then fetch links.result."
        }
    )
    truncated = fields.Boolean(
        metadata={"description": "Present (true) when the job cut its result short (max_rows)."}
    )
    error = fields.Nested(JobErrorSchema)
    callback = fields.Nested(CallbackStateSchema)
    links = fields.Nested(LinksSchema, required=True)


class ProblemSchema(Schema):
    """RFC 9457 problem details, plus ``code`` and, for validation, ``errors``."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    code = fields.String(required=True)
    errors = fields.Dict()
    error = fields.Nested(JobErrorSchema)
    formats = fields.List(fields.String(), metadata={"description": "With 406: what to ask for."})


class JobListSchema(Schema):
    jobs = fields.List(fields.Nested(JobSchema), required=True)
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"description": "null on the last page."}
    )


class ResultEntrySchema(Schema):
    status = fields.String(
        required=True,
        validate=validate.OneOf([*(s.value for s in Status), "NOT_FOUND", "EXPIRED"]),
    )
    progress = fields.Integer()
    result = fields.Raw()
    error = fields.Nested(JobErrorSchema)
    links = fields.Nested(LinksSchema)


class JobTypeSchema(Schema):
    name = fields.String(required=True)
    description = fields.String(required=True)
    params_schema = fields.Dict(required=True, metadata={"description": "JSON schema of params."})
    max_runtime = fields.Integer(required=True)
    max_attempts = fields.Integer(required=True)
    tabular = fields.Boolean(required=True)
    queue = fields.String(
        required=True,
        metadata={"description": "Its queue, as `jobgate worker --queues` names it."},
    )
    priority = fields.Integer(
        required=True, metadata={"description": "Its jobs' default priority."}
    )
    priorities = fields.List(
        fields.Integer(),
        required=True,
        metadata={"description": "[low, high]: the priorities a submit may ask for."},
    )


class JobTypeListSchema(Schema):
    job_types = fields.List(fields.Nested(JobTypeSchema), required=True)


class HealthSchema(Schema):
    status = fields.String(required=True)
    # Why not ready (503 from /readyz only).
    reason = fields.String()
    redis = fields.Boolean()
    workers = fields.List(fields.String())
    # /readyz: the job queue, and the live workers consuming it.
    queue = fields.String()
    consumers = fields.List(fields.String())
