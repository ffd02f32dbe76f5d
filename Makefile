# Two commands on a fresh machine with only Python: `make dev` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: dev test lint bench clean system-dev system-test

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

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
