"""workers/config.py: the contract's defaults (docs/api.md §7), and bad values stop the start."""

from __future__ import annotations

import os

import pytest

from workers.config import MIB, Settings
from workers.errors import ConfigError

# docs/api.md §7, transcribed: setting → default.
CONTRACT_DEFAULTS = {
    "redis_url": "redis://127.0.0.1:6379/0",
    "port": 8000,
    "flower_port": 5555,
    "flower_user": "admin",
    "default_wait": 1,
    "poll_timeout_default": 60,
    "poll_timeout_min": 10,
    "poll_timeout_max": 86400,
    "retention_default": 3600,
    "retention_min": 300,
    "retention_max": 604800,
    "tombstone_ttl": 604800,
    "cancel_grace": 10,
    "max_runtime": 14400,
    "max_result_bytes": 64 * 1024 * 1024,
    "tenant_max_active": 100,
    "api_keys": {},
    "rate_limit": "",
    "api_keys_file": "",
    "auth": "",
    "max_body": 1024 * 1024,
    "job_modules": (),
    "expose_tracebacks": False,
}


@pytest.mark.parametrize("name", list(CONTRACT_DEFAULTS))
def test_default_matches_the_contract(name: str) -> None:
    assert getattr(Settings.from_env({}), name) == CONTRACT_DEFAULTS[name]


def test_default_broker_is_the_redis_url() -> None:
    settings = Settings.from_env({"JOBGATE_REDIS_URL": "redis://cache:6380/1"})

    assert settings.broker_url == "redis://cache:6380/1"


def test_default_worker_concurrency_is_the_cpu_count() -> None:
    assert Settings.from_env({}).worker_concurrency == (os.cpu_count() or 1)


def test_default_inline_result_limit_is_64_kib() -> None:
    assert Settings.from_env({}).inline_result_bytes == 64 * 1024


def test_defaults_come_from_the_given_environ_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBGATE_PORT", "9001")

    assert Settings.from_env({}).port == 8000
    assert Settings.from_env().port == 9001


def test_redis_url_falls_back_to_redis_url() -> None:
    settings = Settings.from_env({"REDIS_URL": "redis://elsewhere:6390/2"})

    assert settings.redis_url == "redis://elsewhere:6390/2"
    assert settings.broker_url == "redis://elsewhere:6390/2"


def test_jobgate_redis_url_wins_over_redis_url() -> None:
    settings = Settings.from_env(
        {"REDIS_URL": "redis://elsewhere:6390/2", "JOBGATE_REDIS_URL": "redis://mine:6391/3"}
    )

    assert settings.redis_url == "redis://mine:6391/3"


def test_empty_jobgate_redis_url_falls_back_to_redis_url() -> None:
    settings = Settings.from_env({"JOBGATE_REDIS_URL": "", "REDIS_URL": "redis://elsewhere:6390/2"})

    assert settings.redis_url == "redis://elsewhere:6390/2"


def config_error(environ: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environ)
    return caught.value


def test_port_that_is_not_a_number_is_refused() -> None:
    error = config_error({"JOBGATE_PORT": "abc"})

    assert error.variable == "JOBGATE_PORT"
    assert "JOBGATE_PORT" in str(error)


def test_port_out_of_range_is_refused() -> None:
    assert config_error({"JOBGATE_PORT": "70000"}).variable == "JOBGATE_PORT"


def test_poll_timeout_min_above_max_is_refused() -> None:
    error = config_error({"JOBGATE_POLL_TIMEOUT_MIN": "100", "JOBGATE_POLL_TIMEOUT_MAX": "50"})

    assert error.variable == "JOBGATE_POLL_TIMEOUT_MIN"
    assert "JOBGATE_POLL_TIMEOUT_MAX" in str(error)


def test_retention_default_outside_its_bounds_is_refused() -> None:
    error = config_error({"JOBGATE_RETENTION_DEFAULT": "100"})

    assert error.variable == "JOBGATE_RETENTION_DEFAULT"


def test_poll_timeout_default_of_zero_is_allowed() -> None:
    assert Settings.from_env({"JOBGATE_POLL_TIMEOUT_DEFAULT": "0"}).poll_timeout_default == 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("16MiB", 16 * MIB),
        ("16777216", 16777216),
        ("512KiB", 512 * 1024),
        ("1G", 1024 * MIB),
        ("2 mb", 2 * MIB),
    ],
)
def test_max_result_bytes_parses_sizes(raw: str, expected: int) -> None:
    assert Settings.from_env({"JOBGATE_MAX_RESULT_BYTES": raw}).max_result_bytes == expected


def test_max_result_bytes_that_is_not_a_size_is_refused() -> None:
    error = config_error({"JOBGATE_MAX_RESULT_BYTES": "sixteen megs"})

    assert error.variable == "JOBGATE_MAX_RESULT_BYTES"


def test_api_keys_map_keys_to_tenants() -> None:
    settings = Settings.from_env({"JOBGATE_API_KEYS": "t1:key-a, t2:key-b"})

    assert settings.api_keys == {"key-a": "t1", "key-b": "t2"}
    assert settings.auth_enabled


@pytest.mark.parametrize("raw", ["t1", "t1:", ":key", "bad tenant:key", "t1:k1,t2"])
def test_api_keys_in_a_bad_format_are_refused(raw: str) -> None:
    assert config_error({"JOBGATE_API_KEYS": raw}).variable == "JOBGATE_API_KEYS"


def test_rate_limit_in_the_contract_notation_is_accepted() -> None:
    settings = Settings.from_env({"JOBGATE_RATE_LIMIT": "50/second;2000/minute"})

    assert settings.rate_limit == "50/second;2000/minute"


def test_rate_limit_in_a_bad_format_is_refused() -> None:
    assert config_error({"JOBGATE_RATE_LIMIT": "fast"}).variable == "JOBGATE_RATE_LIMIT"


def test_bad_boolean_is_refused() -> None:
    error = config_error({"JOBGATE_EXPOSE_TRACEBACKS": "maybe"})

    assert error.variable == "JOBGATE_EXPOSE_TRACEBACKS"


def test_unknown_auth_mode_is_refused() -> None:
    assert config_error({"JOBGATE_AUTH": "sometimes"}).variable == "JOBGATE_AUTH"


@pytest.mark.parametrize(
    "variable", ["JOBGATE_DEFAULT_WAIT", "JOBGATE_WATCHDOG_INTERVAL", "JOBGATE_REDIS_TIMEOUT"]
)
def test_float_setting_that_is_not_a_number_is_refused(variable: str) -> None:
    assert config_error({variable: "nan"}).variable == variable


def test_to_env_round_trips_the_defaults() -> None:
    settings = Settings.from_env({})

    assert Settings.from_env(settings.to_env()) == settings


def test_to_env_round_trips_changed_settings() -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://elsewhere:6390/2",
            "JOBGATE_API_KEYS": "t1:key-a,t2:key-b",
            "JOBGATE_JOB_MODULES": "pkg.one, pkg.two",
            "JOBGATE_EXPOSE_TRACEBACKS": "1",
            "JOBGATE_CANCEL_GRACE": "0.25",
            "JOBGATE_MAX_RESULT_BYTES": "2MiB",
            "JOBGATE_FLOWER_PASSWORD": "s3cret",
            "JOBGATE_AUTH": "on",
        },
        poll_timeout_min=1,
        retention_min=1,
        tombstone_ttl=5,
    )

    assert Settings.from_env(settings.to_env()) == settings


def test_to_env_names_only_jobgate_variables() -> None:
    env = Settings.from_env({}).to_env()

    assert env
    assert all(name.startswith("JOBGATE_") for name in env)


def test_one_key_for_two_tenants_is_refused() -> None:
    with pytest.raises(ConfigError, match="JOBGATE_API_KEYS"):
        Settings.from_env({"JOBGATE_API_KEYS": "t1:same,t2:same"})


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("TRUE", True), ("on", True), ("0", False), ("No", False)]
)
def test_booleans_are_read_in_any_common_spelling(raw: str, expected: bool) -> None:
    assert Settings.from_env({"JOBGATE_TASK_EVENTS": raw}).task_events is expected


def test_unknown_jobgate_variables_are_ignored() -> None:
    assert Settings.from_env({"JOBGATE_NO_SUCH_THING": "x"}) == Settings.from_env({})


def test_error_names_the_variable_and_the_value() -> None:
    error = config_error({"JOBGATE_WEB_THREADS": "0"})

    assert error.variable == "JOBGATE_WEB_THREADS"
    assert "'0'" in str(error)


def test_slow_client_bounds_default_to_10_s_and_256_connections() -> None:
    settings = Settings.from_env({})

    assert settings.header_timeout == 10.0
    assert settings.max_connections_per_client == 256


def test_a_per_client_connection_limit_of_zero_means_no_limit_and_is_allowed() -> None:
    settings = Settings.from_env({"JOBGATE_MAX_CONNECTIONS_PER_CLIENT": "0"})

    assert settings.max_connections_per_client == 0


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("JOBGATE_HEADER_TIMEOUT", "0"),
        ("JOBGATE_HEADER_TIMEOUT", "soon"),
        ("JOBGATE_MAX_CONNECTIONS_PER_CLIENT", "-1"),
    ],
)
def test_bad_slow_client_bounds_are_refused(variable: str, raw: str) -> None:
    assert config_error({variable: raw}).variable == variable


def test_sentinel_mode_needs_its_sentinels_and_primary_name() -> None:
    sentinel = {"JOBGATE_REDIS_MODE": "sentinel"}
    assert config_error(sentinel).variable == "JOBGATE_REDIS_SENTINELS"
    bad = {**sentinel, "JOBGATE_REDIS_SENTINELS": "10.0.0.1:26379,nohost"}
    assert config_error(bad).variable == "JOBGATE_REDIS_SENTINELS"
    no_name = {**sentinel, "JOBGATE_REDIS_SENTINELS": "10.0.0.1:26379"}
    assert config_error(no_name).variable == "JOBGATE_REDIS_SENTINEL_MASTER"
    settings = Settings.from_env({**no_name, "JOBGATE_REDIS_SENTINEL_MASTER": "main"})
    assert settings.sentinel_addresses == [("10.0.0.1", 26379)]


def test_an_unknown_redis_mode_is_refused() -> None:
    assert config_error({"JOBGATE_REDIS_MODE": "ring"}).variable == "JOBGATE_REDIS_MODE"


def test_cluster_mode_needs_a_broker_of_its_own_and_no_wait() -> None:
    cluster = {"JOBGATE_REDIS_MODE": "cluster", "JOBGATE_REDIS_URL": "redis://node:7000/0"}
    assert config_error(cluster).variable == "JOBGATE_BROKER_URL"
    with_broker = {**cluster, "JOBGATE_BROKER_URL": "redis://broker:6379/0"}
    assert Settings.from_env(with_broker).broker_url == "redis://broker:6379/0"
    waiting = {**with_broker, "JOBGATE_REDIS_WAIT_REPLICAS": "1"}
    assert config_error(waiting).variable == "JOBGATE_REDIS_WAIT_REPLICAS"
