# Two entry points for a fresh machine with Python 3.11+: `make demo` and `make test`.
# Both set up .venv from uv.lock; .ci/uv installs uv itself from PyPI when it is missing.
PY ?= python3
UV ?= PY=$(PY) .ci/uv
RUN := $(UV) run --frozen --no-sync

.PHONY: demo test lint bench setup-demo setup-test
# The demo extra alone (the package, the CLI and moto); --inexact keeps a `make test` setup's tools.
setup-demo:
	$(UV) sync --frozen --inexact --extra demo

setup-test:
	$(UV) sync --locked --all-extras --group dev

demo: setup-demo
	$(RUN) guardrail demo

lint: setup-test
	$(RUN) ruff check guardrail handlers tests benchmarks
	$(RUN) ruff format --check guardrail handlers tests benchmarks
	$(RUN) mypy
	$(RUN) lint-imports

test: lint
	$(RUN) pytest

bench: setup-test
	for b in benchmarks/bench_*.py; do $(RUN) python $$b || exit 1; done
