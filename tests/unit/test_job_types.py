"""files.search's and sql.query's pure parts: globs, paths, sources, values."""

from __future__ import annotations

import datetime
import decimal
from pathlib import Path

import pytest
from marshmallow import ValidationError

from workers import registry
from workers.config import Settings, parse_sql_sources, redact_url
from workers.errors import ConfigError
from workers.jobs.files import SearchParams, candidates, glob_regex, is_binary
from workers.jobs.sql import cell, redact


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("**/*", "a.txt", True),
        ("**/*", "x/y/z.md", True),
        ("*.txt", "a.txt", True),
        ("*.txt", "sub/a.txt", False),
        ("**/*.txt", "sub/deep/a.txt", True),
        ("sub/*", "sub/b.md", True),
        ("sub/*", "sub/x/b.md", False),
        ("sub/**", "sub/x/b.md", True),
        ("?.txt", "a.txt", True),
        ("[ab].txt", "b.txt", True),
        ("[!ab].txt", "b.txt", False),
    ],
)
def test_glob_regex(glob: str, path: str, matches: bool) -> None:
    assert bool(glob_regex(glob).match(path)) is matches


@pytest.mark.parametrize("glob", ["../x", "/etc/*", "a/../../b", "~/x"])
def test_globs_outside_the_root_do_not_validate(glob: str) -> None:
    with pytest.raises(ValidationError) as refused:
        SearchParams().load({"pattern": "x", "glob": glob})
    assert "glob" in refused.value.messages


def test_unsupported_regex_does_not_validate() -> None:
    with pytest.raises(ValidationError) as refused:
        SearchParams().load({"pattern": r"(a)\1", "regex": True})
    assert "pattern" in refused.value.messages


def test_candidates_stay_under_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text("s\n")
    (root / "a.txt").write_text("a\n")
    (root / "sub" / "b.txt").write_text("b\n")
    (root / "in-link").symlink_to(root / "a.txt")
    (root / "out-link").symlink_to(outside / "secret")
    (root / "dir-link").symlink_to(outside, target_is_directory=True)

    found = [rel for rel, _real, _size in candidates(root.resolve(), "**/*")]

    assert found == ["a.txt", "in-link", "sub/b.txt"]


def test_binary_files_are_recognised(tmp_path: Path) -> None:
    (tmp_path / "t").write_bytes(b"text\n")
    (tmp_path / "b").write_bytes(b"te\x00xt\n")
    assert not is_binary(tmp_path / "t")
    assert is_binary(tmp_path / "b")


def test_sql_sources_parse_and_hide_passwords() -> None:
    sources = parse_sql_sources("pg=postgresql://u:s3cret@db:5432/x, lite=sqlite:////d/x.db")
    assert sources.names() == ["pg", "lite"]
    assert sources.url("lite") == "sqlite:////d/x.db"
    assert "s3cret" not in repr(sources)
    assert redact_url("postgresql://u:s3cret@db/x") == "postgresql://u:***@db/x"
    assert redact("FATAL: bad s3cret", "postgresql://u:s3cret@db/x") == "FATAL: bad ***"
    env = Settings(sql_sources=sources).to_env()["JOBGATE_SQL_SOURCES"]
    assert parse_sql_sources(env) == sources


@pytest.mark.parametrize(
    "raw", ["pg", "pg=mysql://x/y", "p g=postgresql://x/y", "a=sqlite:////x,a=sqlite:////y"]
)
def test_bad_sql_sources_stop_the_start(raw: str) -> None:
    with pytest.raises(ConfigError, match="JOBGATE_SQL_SOURCES"):
        Settings.from_env({"JOBGATE_SQL_SOURCES": raw})


def test_types_are_offered_only_with_their_settings() -> None:
    registry.load_job_modules()
    bare = {t.name for t in registry.available_types(Settings())}
    both = Settings(files_root="/tmp", sql_sources=parse_sql_sources("pg=postgresql://h/d"))
    assert "files.search" not in bare and "sql.query" not in bare
    assert {"files.search", "sql.query"} <= {t.name for t in registry.available_types(both)}
    assert registry.get_available("sql.query", Settings()) is None
    query = registry.get_available("sql.query", both)
    assert query is not None
    with pytest.raises(ValidationError) as refused:
        query.load_params({"source": "other", "sql": "SELECT 1"})
    assert "source" in refused.value.messages


def test_values_become_flat_json() -> None:
    assert cell(decimal.Decimal("1.50")) == "1.50"
    assert cell(datetime.date(2026, 1, 2)) == "2026-01-02"
    assert cell(b"\x00\x01") == "AAE="
    assert cell({"a": [1]}) == '{"a":[1]}'
    assert cell(None) is None and cell(3) == 3


def test_a_bad_sql_sources_value_is_reported_without_passwords() -> None:
    raw = "pg=postgresql://u:s3cret@db/x,bad=mysql://u:t0p@h/y"
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"JOBGATE_SQL_SOURCES": raw})
    assert "s3cret" not in str(refused.value) and "t0p" not in str(refused.value)
    assert "postgresql://u:***@db/x" in str(refused.value)
