# `make run` and `make test` do all set-up: a virtualenv in .venv, installed
# from pyproject.toml, re-installed when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install run test lint typecheck all bench soak clean

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

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy app workers jobgate tests

all: lint typecheck test

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench

# Not part of `make test`: 10,000 jobs through worker kills and Redis restarts,
# about 15 minutes (SOAK_JOBS, SOAK_RATE: bench/soak.py).
soak: $(VENV)/.installed-dev
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
