"""docker/compose.yaml under podman-compose: the whole stack, through its ports.

The tests run in this order against one project (module-scoped `stack`): the
stop test leaves one worker stopped, and the last test takes the project down.
"""

from __future__ import annotations

import json
from functools import partial

import pytest
import requests

from tests.containers.stack import COMPOSE_FILE, PODMAN_COMPOSE, Images, Stack, run, run_rc
from tests.support.harness import wait_until

pytestmark = pytest.mark.containers

FLOWER_USER = "admin"


def node(worker: str) -> str:
    """A record's worker field (``jobgate@<hostname>:<pid>``) → the Celery node name."""
    return worker.split(":", maxsplit=1)[0]


def worker_names(stack: Stack) -> dict[str, str]:
    """Celery node name (jobgate@<hostname>) → worker container."""
    return {
        f"jobgate@{stack.hostname(c['Names'][0])}": c["Names"][0]
        for c in stack.containers("worker")
    }


def test_the_image_runs_as_a_user_without_compilers_or_pip(images: Images) -> None:
    image = images.env["JOBGATE_IMAGE"]
    config = json.loads(run(["podman", "image", "inspect", image]))[0]["Config"]
    assert config["User"] == "jobgate"
    assert config["Entrypoint"] == ["jobgate"]
    probe = "for tool in gcc cc make pip pip3; do command -v $tool && exit 1; done; id -u"
    out = run(["podman", "run", "--rm", "--entrypoint", "sh", image, "-c", probe])
    assert out.strip() == "10001"
    size = int(run(["podman", "image", "inspect", "--format", "{{.Size}}", image]))
    assert size < 300 * 1024 * 1024, f"{size / 1e6:.0f} MB"
    print(f"\n[containers] image {image}: {size / 1e6:.0f} MB")


@pytest.mark.parametrize("missing", ["REDIS_PASSWORD", "JOBGATE_FLOWER_PASSWORD"])
def test_compose_refuses_to_start_without_a_password(images: Images, missing: str) -> None:
    stack = Stack(images)
    env = {k: v for k, v in stack.env.items() if k != missing}
    done = run_rc(
        [str(PODMAN_COMPOSE), "-p", stack.project, "-f", str(COMPOSE_FILE), "up", "-d"], env=env
    )
    assert done.returncode != 0
    assert f"required variable {missing} is missing a value" in done.stderr
    assert stack.containers() == []


def test_demo_jobs_run_to_done_on_both_workers(stack: Stack) -> None:
    workers = worker_names(stack)
    assert len(workers) == 2
    # One job at a time per worker (concurrency 1): six 2-second jobs need both.
    jobs = [stack.submit(n=20, delay=0.1) for _ in range(6)]
    ran_on = set()
    for job_id in jobs:
        status = stack.wait_done(job_id)
        assert status["progress"] == 100
        assert status["result"]["rows"][-1] == [19, 361]
        ran_on.add(node(stack.record(job_id)["run:1:w"]))
    assert ran_on == set(workers)


def test_every_service_passes_its_health_check_but_beat_which_has_none(stack: Stack) -> None:
    def healthy(name: str) -> bool:
        # The engine's own check, as `docker compose` would run it.
        return run_rc(["podman", "healthcheck", "run", name]).returncode == 0

    for service in ("redis", "api", "worker", "sweeper", "flower"):
        for found in stack.containers(service):
            name = found["Names"][0]
            wait_until(partial(healthy, name), 120, f"{name} healthy", step=2)
    beat = run_rc(["podman", "healthcheck", "run", stack.container("beat")])
    assert beat.returncode != 0
    assert "no defined healthcheck" in beat.stderr


def test_redis_runs_with_aof_and_noeviction(stack: Stack) -> None:
    assert stack.redis_cli("CONFIG", "GET", "appendonly").split() == ["appendonly", "yes"]
    policy = stack.redis_cli("CONFIG", "GET", "maxmemory-policy").split()
    assert policy == ["maxmemory-policy", "noeviction"]


def test_a_job_whose_worker_container_is_stopped_finishes_on_the_other(stack: Stack) -> None:
    workers = worker_names(stack)
    job_id = stack.submit(n=100, delay=0.1)  # about 10 s

    def running_somewhere() -> str | None:
        status = stack.status(job_id)
        worker = stack.record(job_id).get("run:1:w")
        return node(worker) if worker and status["progress"] >= 5 else None

    first = wait_until(running_somewhere, 120, "the job running with some progress", step=0.5)
    stack.podman("stop", "--time", "30", workers[first], timeout=120)

    status = stack.wait_done(job_id)
    record = stack.record(job_id)
    assert status["attempt"] == 2
    assert record["run:1"].endswith(" handed_back"), record
    (other,) = set(workers) - {first}
    assert node(record["run:2:w"]) == other
    assert len(status["result"]["rows"]) == 100


def test_a_done_job_and_its_result_survive_a_redis_restart(stack: Stack) -> None:
    job_id = stack.submit(n=10, delay=0)
    before = stack.wait_done(job_id)
    stack.compose("restart", "redis", timeout=300)

    def answered() -> dict | None:
        try:
            return stack.status(job_id)
        except (AssertionError, requests.RequestException):
            return None  # 503 while Redis loads its AOF

    after = wait_until(answered, 120, "the job's status after the restart", step=1)
    assert after["status"] == "DONE"
    assert after["result"] == before["result"]
    result = requests.get(
        f"{stack.url}/v1/jobs/{job_id}/result", headers=stack.headers(), timeout=30
    )
    assert result.status_code == 200
    assert result.json()["rows"] == [[i, i * i] for i in range(10)]


def test_flower_answers_401_without_the_password_and_200_with_it(stack: Stack) -> None:
    url = f"{stack.flower_url}/workers"
    wait_until(lambda: _reaches(url), 120, "Flower's port", step=1)
    assert requests.get(url, timeout=30).status_code == 401
    assert requests.get(url, auth=(FLOWER_USER, "wrong"), timeout=30).status_code == 401
    answer = requests.get(url, auth=(FLOWER_USER, stack.flower_password), timeout=30)
    assert answer.status_code == 200


def test_down_v_leaves_no_container_volume_network_or_pod(stack: Stack) -> None:
    assert stack.containers() and stack.volumes() and stack.networks()
    stack.compose("down", "-v", "--remove-orphans", timeout=900)
    assert stack.containers() == []
    assert stack.volumes() == []
    assert stack.networks() == []
    assert stack.pods() == []


def _reaches(url: str) -> bool:
    try:
        requests.get(url, timeout=10)
    except requests.RequestException:
        return False
    return True
