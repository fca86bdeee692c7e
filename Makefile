# seat-revoker — the two commands that matter: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet
REDIS_URL ?= redis://127.0.0.1:6379/0
export REDIS_URL

.PHONY: demo sandbox test unit integration lint bench install dev tools clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(PIP) -e '.[dev]'
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed

## demo: install, then offboard sample people end to end on embedded defaults
demo: install
	$(VENV)/bin/seat-revoker demo

## sandbox: the local Polar stand-in with 5 sample seats; prints the env and next commands
sandbox: install
	$(VENV)/bin/seat-revoker sandbox --seed 5

## tools: system packages the tests use (redis-server, chromium), installed when missing
tools:
	@command -v redis-server >/dev/null || { echo "installing redis-server"; \
	  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
	@command -v chromium >/dev/null || { echo "installing chromium"; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

## test: dev dependencies, Redis reachable (a private redis-server if none answers), all tests
test: dev tools
	$(PY) -m worker.sandbox.testenv -- $(PY) -m pytest $(PYTEST_ARGS)

unit: dev
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: dev
	$(VENV)/bin/ruff check worker config tests bench
	$(VENV)/bin/mypy

## bench: reproducible benchmarks (see bench/README.md)
bench: dev
	$(PY) -m worker.sandbox.testenv -- $(PY) -m bench.run_all

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
