"""``files.search``: a text search over the files under ``JOBGATE_FILES_ROOT``.

A reference job type: progress by bytes scanned, every match published as a
partial row at once, a result table kept in chunks when it is large
(``ctx.rows_result``), and a stop within a moment (``ctx.progress`` per line).

Safety: only files under the root are read. A glob naming an absolute path or
``..`` is refused at submit (422); the walk never follows a symlinked
directory, and a file whose real path (symlinks resolved) is outside the root
is skipped. Regular expressions run on RE2, whose time is linear in the text:
no pattern can make a search hang (``(a+)+$`` included). Files are read a line
at a time; one that has a NUL byte in its first 8 KiB is binary and skipped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import re2
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from workers.config import Settings
from workers.fields import StrictBoolean
from workers.registry import job
from workers.runtime import JobContext, RowsResult

COLUMNS = ("path", "line", "text")
# A file with a NUL byte in this many first bytes is binary.
BINARY_SNIFF_BYTES = 8192
# Lines are read at most this long at a time (a longer one in pieces, each
# searched and reported under the same line number): memory stays bounded.
MAX_LINE_BYTES = 1024 * 1024
# A match's ``text`` is the line cut at this many characters.
MAX_TEXT_CHARS = 4096


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob over relative paths as a regex: ``**`` any number of directories,
    ``*`` and ``?`` within one name, ``[...]`` a class; hidden names match."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) > 0:
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _check_glob(glob: str) -> None:
    parts = glob.replace("\\", "/").split("/")
    if glob.startswith(("/", "~")) or ".." in parts:
        raise ValidationError("The glob must stay under the root: no absolute path, no '..'.")


class SearchParams(Schema):
    pattern = fields.String(required=True, validate=validate.Length(1, 1000))
    regex = StrictBoolean(load_default=False, metadata={"description": "pattern is an RE2 regex"})
    case_sensitive = StrictBoolean(load_default=True)
    glob = fields.String(
        load_default="**/*",
        validate=[validate.Length(1, 1000), _check_glob],
        metadata={"description": "Which files, relative to JOBGATE_FILES_ROOT."},
    )
    max_matches = fields.Integer(
        strict=True, load_default=10_000, validate=validate.Range(1, 1_000_000)
    )

    @validates_schema
    def _regex_compiles(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("regex"):
            try:
                re2.compile(data["pattern"])
            except re2.error as exc:
                raise ValidationError(f"Not a valid RE2 expression: {exc}", "pattern") from None


def _available(settings: Settings) -> bool:
    return bool(settings.files_root)


def matcher(pattern: str, regex: bool, case_sensitive: bool) -> Callable[[str], bool]:
    if regex:
        compiled = re2.compile(pattern if case_sensitive else f"(?i){pattern}")
        return lambda text: compiled.search(text) is not None
    if case_sensitive:
        return lambda text: pattern in text
    folded = pattern.casefold()
    return lambda text: folded in text.casefold()


def candidates(root: Path, glob: str) -> Iterator[tuple[str, Path, int]]:
    """(relative path, real path, size) of each regular file under ``root``
    that ``glob`` matches, in a stable order. Symlinked directories are not
    entered; a file that resolves outside the root is skipped."""
    wanted = glob_regex(glob)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            if not wanted.match(rel):
                continue
            real = full.resolve()
            if not real.is_relative_to(root) or not real.is_file():
                continue
            yield rel, real, real.stat().st_size


def is_binary(path: Path) -> bool:
    with path.open("rb") as handle:
        return b"\0" in handle.read(BINARY_SNIFF_BYTES)


@job(
    "files.search",
    params=SearchParams,
    tabular=True,
    columns=COLUMNS,
    available=_available,
    description="Searches the files under JOBGATE_FILES_ROOT for a text or an RE2 regex.",
)
def search(
    ctx: JobContext,
    pattern: str,
    regex: bool = False,
    case_sensitive: bool = True,
    glob: str = "**/*",
    max_matches: int = 10_000,
) -> RowsResult:
    root = Path(ctx.settings.files_root).resolve(strict=True)
    matches = matcher(pattern, regex, case_sensitive)
    files = list(candidates(root, glob))
    total = sum(size for _rel, _real, size in files) or 1
    ctx.columns(list(COLUMNS))
    scanned = found = 0
    for rel, real, size in files:
        if is_binary(real):
            scanned += size
            continue
        with real.open("rb") as handle:
            number = 0
            whole = True  # the previous piece ended its line
            while raw := handle.readline(MAX_LINE_BYTES):
                if whole:
                    number += 1
                whole = raw.endswith(b"\n")
                scanned += len(raw)
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if matches(text):
                    ctx.publish([[rel, number, text[:MAX_TEXT_CHARS]]])
                    found += 1
                    if found >= max_matches:
                        return ctx.rows_result(truncated=True)
                ctx.progress(scanned * 100 // total, f"{scanned} of {total} bytes, {found} matches")
    return ctx.rows_result()
