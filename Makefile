# `make run` and `make test` do all set-up: a virtualenv in .venv, installed
# from pyproject.toml, re-installed when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install run test test-cluster test-containers test-hosts images lint typecheck all bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# setuptools announces every editable install with a multi-screen notice
# (a Python warning raised in pip's build subprocess): not for a user's screen.
PIP_INSTALL := PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e '.[run]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml client/pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e '.[dev]' -e ./client
	@# tests/client drives `jg watch`'s progress bar in tmux.
	@command -v tmux >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && apt-get install -y -qq tmux >/dev/null; } || \
		echo "warning: no tmux; tests/client's progress-bar test needs it"
	@# The console's browser tests drive Debian's Chromium with Playwright
	@# (which cannot download a browser of its own here).
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
		echo "warning: no chromium; tests/integration/test_console_browser.py needs it"
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-dev

run: $(VENV)/.installed-run
	$(BIN)/jobgate run

# pytest's exit code 5 (no tests collected) is not a failure.
test: $(VENV)/.installed-dev
	$(BIN)/pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The client-API part of the integration suite, the metrics, webhooks, the
# events stream and the key hygiene checks with job state on a 3-master Redis Cluster
# (JOBGATE_REDIS_MODE=cluster, the broker a single Redis);
# tests/integration/test_cluster.py (sharded indexes, repair) runs in `make test`.
CLUSTER_TESTS := tests/integration/test_client_api.py tests/integration/test_lifecycle.py \
	tests/integration/test_metrics.py tests/integration/test_operator_metrics.py \
	tests/integration/test_webhooks.py tests/integration/test_events_stream.py \
	tests/integration/test_zz_redis_hygiene.py
test-cluster: $(VENV)/.installed-dev
	TEST_REDIS_MODE=cluster $(BIN)/pytest $(CLUSTER_TESTS) $(PYTEST_ARGS)

# The production image (docker/Dockerfile) with docker when an engine answers,
# else podman; base images made from Debian where no registry answers.
images: | $(BIN)/python
	PYTHON=$(BIN)/python docker/images.sh

# The compose stack under Podman (tests/containers, marker `containers`, left
# out of `make test`): installs podman and makes base images when missing.
test-containers: $(VENV)/.installed-dev
	$(BIN)/pytest tests/containers -m containers --timeout=1800 $(PYTEST_ARGS)

# Several hosts as network namespaces (tests/hosts, marker `hosts`, left out
# of `make test`): as root; installs iproute2 (`ip netns`) when missing.
test-hosts: $(VENV)/.installed-dev
	@command -v ip >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null; }
	$(BIN)/pytest tests/hosts -m hosts --timeout=900 $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy app workers jobgate tests bench docker/healthcheck.py docs/flower_screenshot.py docs/console_screenshots.py
	$(BIN)/mypy --config-file client/pyproject.toml client/src

all: lint typecheck test

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench

# Not part of `make test`: 10,000 jobs through worker kills and Redis restarts,
# about 15 minutes (SOAK_JOBS, SOAK_RATE: bench/soak.py).
soak: $(VENV)/.installed-dev
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache client/build client/src/*.egg-info
