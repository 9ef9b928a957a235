"""docker/compose.yaml and docker/.env.example agree with each other and with
the settings (plain file checks: these run in `make test`, no containers)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from workers.config import Settings, documented_settings

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE_TEXT = (DOCKER / "compose.yaml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
ENV_EXAMPLE = (DOCKER / ".env.example").read_text()
JOBGATE_SERVICES = ("api", "worker", "sweeper", "webhooks", "beat", "flower")
# Set in the image (JOBGATE_BIND) or not meant for compose (a separate broker).
# The compose stack runs one Redis: the Sentinel and Cluster settings belong
# to other topologies (README, "Scaling out").
REDIS_TOPOLOGY = {
    "JOBGATE_REDIS_MODE",
    "JOBGATE_REDIS_SENTINELS",
    "JOBGATE_REDIS_SENTINEL_MASTER",
    "JOBGATE_REDIS_WAIT_REPLICAS",
    "JOBGATE_REDIS_WAIT_TIMEOUT",
}
NOT_FROM_COMPOSE = {"JOBGATE_BIND", "JOBGATE_BROKER_URL", *REDIS_TOPOLOGY}


def test_env_example_lists_every_variable_the_compose_file_reads() -> None:
    read = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE_TEXT))
    listed = set(re.findall(r"^#?([A-Z_]+)=", ENV_EXAMPLE, re.MULTILINE))
    assert read - listed == set()
    assert listed - read == set()


def test_every_setting_reaches_the_services_that_read_it() -> None:
    passed: set[str] = set()
    for name in JOBGATE_SERVICES:
        environment = COMPOSE["services"][name]["environment"]
        assert environment["JOBGATE_REDIS_URL"].startswith("redis://:"), name
        passed |= set(environment)
    settings = {variable for variable, _ in documented_settings()}
    assert settings - NOT_FROM_COMPOSE - passed == set()


def test_every_jobgate_service_waits_for_a_healthy_redis() -> None:
    for name in JOBGATE_SERVICES:
        service = COMPOSE["services"][name]
        assert service["depends_on"] == {"redis": {"condition": "service_healthy"}}, name
        assert service["init"] is True, name
    assert "healthcheck" in COMPOSE["services"]["redis"]


def test_the_worker_stop_grace_stays_above_the_shutdown_grace() -> None:
    grace = COMPOSE["services"]["worker"]["stop_grace_period"]
    default = re.fullmatch(r"\$\{JOBGATE_WORKER_STOP_GRACE:-(\d+)s\}", grace)
    assert default, grace
    assert int(default.group(1)) > Settings().shutdown_grace
