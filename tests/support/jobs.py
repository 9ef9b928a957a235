"""Job types that only the tests load (JOBGATE_JOB_MODULES=tests.support.jobs)."""

from __future__ import annotations

import time
from typing import Any

from marshmallow import Schema, fields, validate

from workers.registry import job
from workers.runtime import JobContext, JobStopped, RowsResult


class SecondsParams(Schema):
    seconds = fields.Float(load_default=30.0, validate=validate.Range(0, 600))


@job("test.stubborn", params=SecondsParams, description="Ignores every stop request.")
def stubborn(ctx: JobContext, seconds: float) -> str:
    """Swallows JobStopped and keeps running: only the forced stop can end it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except JobStopped:
            continue
    return "survived"


@job("test.slow", params=SecondsParams, max_runtime=2, description="Sleeps past its 2 s limit.")
def slow(ctx: JobContext, seconds: float) -> str:
    time.sleep(seconds)
    return "finished"


class SizeParams(Schema):
    size = fields.Integer(required=True, validate=validate.Range(0, 64 * 1024 * 1024))


@job("test.big", params=SizeParams, description="Returns a string of `size` characters.")
def big(ctx: JobContext, size: int) -> str:
    return "x" * size


@job("test.not_json", description="Returns something JSON cannot hold.")
def not_json(ctx: JobContext) -> Any:
    return {1, 2, 3}


class StepsParams(Schema):
    steps = fields.Integer(load_default=10, validate=validate.Range(1, 100_000))
    delay = fields.Float(load_default=0.1, validate=validate.Range(0, 60))


@job("test.fragile", params=StepsParams, max_attempts=1, description="One attempt only.")
def fragile(ctx: JobContext, steps: int, delay: float) -> dict[str, int]:
    for step in range(steps):
        time.sleep(delay)
        ctx.progress((step + 1) * 100 // steps)
    return {"steps": steps, "attempt": ctx.attempt}


@job("test.held", params=SecondsParams, description="Reports 1 % then 2 % at once, then sleeps.")
def held(ctx: JobContext, seconds: float) -> str:
    """Its 1 % and 2 % come within 50 ms of its start: only the watchdog can write them."""
    ctx.progress(1)
    ctx.progress(2)
    time.sleep(seconds)
    return "slept"


@job("test.rows", description="Returns a list of flat objects, without declaring tabular=True.")
def rows(ctx: JobContext) -> list[dict[str, int]]:
    return [{"a": 1}, {"a": 2}]


class PublishParams(Schema):
    rows = fields.Integer(required=True, validate=validate.Range(0, 10_000_000))
    width = fields.Integer(load_default=10, validate=validate.Range(1, 10_000))


@job("test.publish", params=PublishParams, tabular=True, description="Publishes rows.")
def publish(ctx: JobContext, rows: int, width: int) -> RowsResult:
    """Publishes ``rows`` rows ``[i, "x" * width]``; its result is what it published."""
    ctx.columns(["i", "text"])
    for i in range(rows):
        ctx.publish([[i, "x" * width]])
        ctx.progress(i * 100 // max(1, rows))
    return ctx.rows_result()


@job(
    "test.report",
    params=SecondsParams,
    queue="reports",
    priority=2,
    priorities=(1, 5),
    description="Sleeps; on the queue 'reports', priority 1-5 (default 2).",
)
def report(ctx: JobContext, seconds: float) -> str:
    time.sleep(seconds)
    return "reported"
