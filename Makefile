# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: run test venv lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,redis,aws,otel]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/vmx serve --config examples/quickstart.yaml

# The audit tests run against a real PostgreSQL 15 (started by tests/services/postgres.py);
# the dashboard test drives Debian's headless chromium.
PG_BIN := /usr/lib/postgresql/15/bin

# Lint and strict typing are part of the suite: a style regression fails CI like a bug.
test: lint
	@test -x $(PG_BIN)/initdb || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15; }
	@command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check vmx_core vmx_server vmx_providers tests examples benchmarks
	$(BIN)/mypy

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
