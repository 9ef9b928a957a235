"""What the API answers, as typed values (the raw JSON stays in ``raw``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

LIVE = ("INITIALIZED", "RUNNING")
TERMINAL = ("DONE", "FAILED")


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time as the API writes it (``…Z``), aware; ``None`` when absent."""
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Snapshot:
    """One status document (docs/api.md §2): the job as it was when read."""

    id: str
    type: str
    status: str
    progress: int
    message: str
    poll_timeout: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Snapshot:
        return cls(
            id=str(doc["id"]),
            type=str(doc.get("type", "")),
            status=str(doc["status"]),
            progress=int(doc.get("progress", 0)),
            message=str(doc.get("message", "")),
            poll_timeout=int(doc.get("poll_timeout", 0)),
            raw=doc,
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def error(self) -> dict[str, Any] | None:
        error = self.raw.get("error")
        return error if isinstance(error, dict) else None

    @property
    def has_inline_result(self) -> bool:
        return "result" in self.raw

    @property
    def queue_position(self) -> int | None:
        position = self.raw.get("queue_position")
        return int(position) if position is not None else None

    @property
    def created_at(self) -> datetime | None:
        return parse_time(self.raw.get("created_at"))

    @property
    def started_at(self) -> datetime | None:
        return parse_time(self.raw.get("started_at"))

    @property
    def finished_at(self) -> datetime | None:
        return parse_time(self.raw.get("finished_at"))

    @property
    def poll_deadline(self) -> datetime | None:
        return parse_time(self.raw.get("poll_deadline"))

    @property
    def expires_at(self) -> datetime | None:
        return parse_time(self.raw.get("expires_at"))

    def changed_from(self, other: Snapshot | None) -> bool:
        """Whether a watcher would show something new (status, percent or message)."""
        if other is None:
            return True
        return (self.status, self.progress, self.message) != (
            other.status,
            other.progress,
            other.message,
        )


@dataclass(frozen=True)
class JobType:
    """One entry of ``GET /v1/job-types``."""

    name: str
    description: str
    params_schema: dict[str, Any]
    max_runtime: float | None
    max_attempts: int | None
    tabular: bool
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> JobType:
        return cls(
            name=str(doc["name"]),
            description=str(doc.get("description") or ""),
            params_schema=dict(doc.get("params_schema") or {}),
            max_runtime=doc.get("max_runtime"),
            max_attempts=doc.get("max_attempts"),
            tabular=bool(doc.get("tabular", False)),
            raw=doc,
        )
