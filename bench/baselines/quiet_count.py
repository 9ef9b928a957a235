"""``bench.count_quiet``: demo.count's own loop with progress reporting off.

Loaded with ``JOBGATE_JOB_MODULES=bench.baselines.quiet_count`` by the progress
scenario only. It runs in the same worker, through the same start and finish,
as ``demo.count``; the only difference is a context whose ``progress``,
``check`` and ``publish`` do nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from workers.jobs.demo import CountParams, count
from workers.registry import job
from workers.runtime import JobContext


class QuietContext:
    """A ``ctx`` that reports nothing."""

    writes = 0

    def progress(self, percent: int, message: str = "") -> None:
        return None

    def check(self) -> None:
        return None

    def publish(self, rows: Iterable[Any]) -> None:
        return None


def quiet() -> JobContext:
    return cast(JobContext, QuietContext())


@job(
    "bench.count_quiet",
    params=CountParams,
    tabular=True,
    columns=("step", "square"),
    description="demo.count with a context that reports nothing (bench baseline).",
)
def count_quiet(
    ctx: JobContext,
    n: int,
    delay: float = 0.0,
    fail_at: int | None = None,
    ignore_cancel: bool = False,
) -> dict[str, Any]:
    return count(quiet(), n, delay, fail_at, ignore_cancel)
