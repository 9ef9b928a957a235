"""``demo.count``: the built-in job every deployment has (docs/api.md §8)."""

from __future__ import annotations

import time
from typing import Any

from marshmallow import Schema, fields, validate

from workers.fields import StrictBoolean
from workers.registry import job
from workers.runtime import JobContext


class CountParams(Schema):
    n = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(1, 100_000),
        metadata={"description": "How many steps to count: the result has this many rows."},
    )
    delay = fields.Float(
        load_default=0.0,
        validate=validate.Range(0, 60),
        allow_nan=False,
        metadata={"description": "Seconds to sleep at each step."},
    )
    # A step at or past n is never reached: the job then simply succeeds.
    fail_at = fields.Integer(
        strict=True,
        validate=validate.Range(0, 100_000),
        metadata={"description": "Fail with a JOB_ERROR at this step (for trying failures)."},
    )
    ignore_cancel = StrictBoolean(
        load_default=False,
        metadata={
            "description": "Sleep without checking for cancellation, so that only the "
            "forced stop ends a cancelled job."
        },
    )


@job(
    "demo.count",
    params=CountParams,
    tabular=True,
    columns=("step", "square"),
    description="Counts n steps, squaring each; reports progress and partial rows.",
)
def count(
    ctx: JobContext,
    n: int,
    delay: float = 0.0,
    fail_at: int | None = None,
    ignore_cancel: bool = False,
) -> dict[str, Any]:
    rows: list[list[int]] = []
    for step in range(n):
        if step == fail_at:
            raise ValueError(f"failed at step {step}")
        if delay:
            time.sleep(delay)
        row = [step, step * step]
        rows.append(row)
        if not ignore_cancel:
            ctx.publish([row])
            ctx.progress((step + 1) * 100 // n, f"step {step + 1} of {n}")
    return {"columns": ["step", "square"], "rows": rows}
