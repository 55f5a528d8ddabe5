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
	command -v redis-server >/dev/null || (apt-get update && apt-get install -y redis-server)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check vmx_core vmx_server vmx_providers tests examples benchmarks
	$(BIN)/mypy

typecheck: $(STAMP)
	$(BIN)/mypy

# The side-by-side benchmark (issue 9): installs wrk, Portkey and LiteLLM (under the git-ignored
# benchmarks/peers/) when missing, and writes benchmarks/results/<timestamp>/.  QUICK=1: minutes.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,redis,aws,otel,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	@test -x $(PG_BIN)/initdb || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15; }
	command -v redis-server >/dev/null || (apt-get update && apt-get install -y redis-server)
	command -v node >/dev/null || (apt-get update && apt-get install -y nodejs npm)
	$(BIN)/python -m benchmarks.gateway.run $(if $(QUICK),--quick) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
