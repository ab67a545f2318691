# The two commands a newcomer needs: `make run` and `make test`.
# Each creates .venv (Python 3.11+) and installs what it needs on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= $(if $(wildcard monitor.yaml),monitor.yaml,monitor.example.yaml)
ARGS ?=

.PHONY: run test lint typecheck unit bench clean lock

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "monitor needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV) || { echo "on Debian/Ubuntu: sudo apt-get install python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

## make run: the daemon, on ./monitor.yaml if present, else the shipped example config
run: $(BIN)/.installed
	$(BIN)/monitor run -c $(CONFIG) $(ARGS)

## make test: lint, types, Dockerfile lint, then the whole test suite
test: lint typecheck unit

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile
	$(BIN)/monitor rules lint rules/

typecheck: $(BIN)/.installed
	$(BIN)/mypy

unit: $(BIN)/.installed
	$(BIN)/pytest

## make lock: re-pin the container's runtime dependencies (needs network)
lock: $(BIN)/.installed
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/python -m pip install --quiet .
	.lockenv/bin/python -m pip freeze --exclude monitor > requirements.lock
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
