"""The Python/Lua contract: one source for every shared fact, typed replies.

The .lua files are read as text (no status, code or window may come back as
a literal); the generated prelude and the replies are checked against real
Lua on fakeredis.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.unit.helpers import MakeJob
from workers import limits
from workers.keys import JobKeys
from workers.states import RETRYABLE, TERMINAL, ErrorCode, Status
from workers.store import JobStore
from workers.store.scripts import (
    LUA_DIR,
    REPLY_TAGS,
    SCRIPT_KEYS,
    SCRIPT_NAMES,
    Absent,
    CommonArgs,
    ReadReply,
    StartReply,
    Tag,
    generated_prelude,
    lua_source,
    script_keys,
)

LUA_FILES = sorted(LUA_DIR.glob("*.lua"))
# Numbers a script may still write: none, one, halves, and seconds → ms.
PLAIN_NUMBERS = {"0", "1", "2", "1000"}


def lua_code(path: Path) -> str:
    """The file without its comments (they may name anything)."""
    return "\n".join(line.split("--", 1)[0] for line in path.read_text().splitlines())


def quoted_literals(path: Path) -> set[str]:
    return set(re.findall(r"'([^']*)'", lua_code(path)))


@pytest.mark.parametrize("path", LUA_FILES, ids=lambda p: p.name)
def test_lua_files_spell_no_status_code_or_reply_tag(path: Path) -> None:
    shared = {s.value for s in Status} | {c.value for c in ErrorCode} | {Tag.LEASE_LOST.value}
    shared |= {Absent.GONE.value, Absent.MISSING.value}

    spelled = quoted_literals(path) & shared

    assert spelled == set(), f"{path.name} spells {spelled}: use the prelude's names"


@pytest.mark.parametrize("path", LUA_FILES, ids=lambda p: p.name)
def test_lua_files_write_no_window_or_limit(path: Path) -> None:
    code = re.sub(r"'[^']*'", "''", lua_code(path))  # numbers inside strings are text

    numbers = set(re.findall(r"(?<![\w.\[])\d+(?:\.\d+)?", code))

    assert numbers <= PLAIN_NUMBERS, f"{path.name} writes {numbers - PLAIN_NUMBERS}"


def test_lua_files_never_read_keys_or_argv_by_position() -> None:
    for path in LUA_FILES:
        code = lua_code(path)

        assert "KEYS[" not in code, path.name
        assert "ARGV[" not in code, path.name


def test_prelude_names_every_key_in_the_order_the_store_builds_them() -> None:
    job = JobKeys("t1", "job-1")
    prelude = generated_prelude()

    built = script_keys(job, "default")

    assert len(built) == len(SCRIPT_KEYS)
    assert built[: len(job.all())] == job.all()  # the job's own keys first: one hash slot
    for position, (name, _build) in enumerate(SCRIPT_KEYS, start=1):
        assert f"local {name} = KEYS[{position}]\n" in prelude


def test_prelude_names_the_common_arguments_and_hands_on_the_rest() -> None:
    prelude = generated_prelude()

    assert "local TOKEN = ARGV[4]\n" in prelude
    assert "local TOMB_TTL_MS = tonumber(ARGV[2])\n" in prelude
    assert f"local ARGS = {{unpack(ARGV, {len(CommonArgs._fields) + 1})}}\n" in prelude


def test_prelude_carries_pythons_statuses_codes_and_limits() -> None:
    prelude = generated_prelude()

    for status in Status:
        assert f"local STATUS_{status.name} = '{status.value}'\n" in prelude
    for code in ErrorCode:
        assert f"local CODE_{code.name} = '{code.value}'\n" in prelude
    for prefix, outcomes in REPLY_TAGS.items():
        for outcome in outcomes:
            assert f"local {prefix}_{outcome.name} = '{outcome.value}'\n" in prelude
    assert all(f"['{s.value}'] = true" in prelude for s in TERMINAL)
    assert all(f"['{c.value}'] = true" in prelude for c in RETRYABLE)
    assert f"local EVENTS_TTL_MS = {limits.EVENTS_TTL_MS}\n" in prelude


def test_every_script_loads_with_the_generated_prelude(store: JobStore, client: Any) -> None:
    for name in SCRIPT_NAMES:
        source = lua_source(name)

        assert source.startswith(generated_prelude())
        assert client.script_exists(client.script_load(source)) == [True]


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_a_failed_jobs_retryable_flag_is_its_codes(
    code: ErrorCode, store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")

    assert store.fail(job, code, "stopped")

    error = json.loads(client.hget(job.record, "error"))
    assert (error["code"], error["retryable"]) == (code.value, code.retryable)


def test_a_cancelled_job_is_not_retryable(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")

    store.cancel(job)

    error = store.read(job, poll=False).error
    assert error is not None
    assert (error["code"], error["retryable"]) == ("CANCELLED_BY_USER", False)


def test_a_timed_out_job_is_retryable(store: JobStore, client: Any, make_job: MakeJob) -> None:
    job = make_job("RUNNING")
    client.delete(job.heartbeat)  # what its expiry does

    error = store.read(job, poll=False).error

    assert error is not None
    assert (error["code"], error["retryable"]) == ("TIMED_OUT", True)


def test_start_reply_parses_a_job_to_run_and_a_refusal() -> None:
    run = StartReply.parse(["run", "demo.count", '{"n":1}', 2, "trace-42"])
    skipped = StartReply.parse(["skip", "DONE"])
    missing = StartReply.parse(["missing"])

    assert run == StartReply(True, "RUNNING", "demo.count", '{"n":1}', 2, "trace-42")
    assert (skipped.run, skipped.status) == (False, "DONE")
    assert (missing.run, missing.status) == (False, "missing")


def test_read_reply_of_an_absent_job_says_why() -> None:
    assert ReadReply.parse(["gone"]) is Absent.GONE
    assert ReadReply.parse(["missing"]) is Absent.MISSING
