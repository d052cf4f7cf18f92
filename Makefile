# Two entry points for a fresh machine with Python 3.11+: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/guardrail: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

.PHONY: demo test lint bench
demo: $(BIN)/guardrail
	$(BIN)/guardrail demo

lint: $(BIN)/guardrail
	$(BIN)/ruff check guardrail handlers tests benchmarks
	$(BIN)/ruff format --check guardrail handlers tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

bench: $(BIN)/guardrail
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done
