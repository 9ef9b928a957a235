# `make run` and `make test` do all set-up: a virtualenv in .venv, installed
# from pyproject.toml, re-installed when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install run test test-containers images lint typecheck all bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[run]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-dev

run: $(VENV)/.installed-run
	$(BIN)/jobgate run

# pytest's exit code 5 (no tests collected) is not a failure.
test: $(VENV)/.installed-dev
	$(BIN)/pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The production image (docker/Dockerfile) with docker when an engine answers,
# else podman; base images made from Debian where no registry answers.
images: | $(BIN)/python
	PYTHON=$(BIN)/python docker/images.sh

# The compose stack under Podman (tests/containers, marker `containers`, left
# out of `make test`): installs podman and makes base images when missing.
test-containers: $(VENV)/.installed-dev
	$(BIN)/pytest tests/containers -m containers --timeout=1800 $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy app workers jobgate tests docker/healthcheck.py

all: lint typecheck test

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
