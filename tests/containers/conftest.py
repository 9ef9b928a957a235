"""The image and the compose stack, for real: Podman, `make images`, podman-compose.

Slow (minutes) and heavy: marked `containers`, left out of `make test`, run by
`make test-containers` (and `.ci/run`). Every project has a unique name and
free ports, and is taken down with `down -v` whatever happens.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.containers.stack import Images, Stack, ensure_podman, make_images
from tests.support.harness import wait_until


@pytest.fixture(scope="session")
def images() -> Images:
    ensure_podman()
    built = make_images()
    print(f"\n[containers] make images: {built.seconds:.1f} s, {built.env}")
    return built


@pytest.fixture(scope="module")
def stack(images: Images) -> Iterator[Stack]:
    """Redis, the API, two workers, the sweeper, beat and Flower, up and ready."""
    stack = Stack(images)
    started = time.monotonic()
    try:
        stack.compose("up", "-d", timeout=900)
        wait_until(stack.ready, 300, "/readyz through the published port", step=1)
        first = stack.submit(n=1, delay=0)
        stack.wait_done(first)
        stack.up_to_first_done = time.monotonic() - started
        print(f"\n[containers] up to the first DONE job: {stack.up_to_first_done:.1f} s")
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", timeout=900, check=False)
