# Two commands on a fresh machine with only Python: `make dev` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: dev test lint bench bench-quality clean system-dev system-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-dev

## Run the Temporal dev server (SQLite in ./data, Web UI on 8233), the worker and the API on 8000.
dev: $(VENV)/.installed-dev system-dev
	$(BIN)/python devserver.py

## Debian packages: bubblewrap for the sandbox; redis-server and chromium for the tests.
system-dev:
	@scripts/system-packages dev

system-test:
	@scripts/system-packages test

## Lint, type-check and run the whole test suite against real Temporal servers.
test: $(VENV)/.installed-test system-test lint
	$(BIN)/pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench.run

## Model quality vs. default HistGradientBoosting and FLAML AutoML (FLAML_SECONDS=10 for a quick look).
FLAML_SECONDS ?= 60
TUNING_SECONDS ?= 60
bench-quality: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.quality --flaml-seconds $(FLAML_SECONDS) --tuning-seconds $(TUNING_SECONDS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
