# The README's two commands: `make run` and `make test`. Both set themselves up on a fresh machine
# that has Python 3.11 and make: a virtual environment in .venv with the locked set (requirements.lock).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
UV_VERSION := 0.13.9
# test sessions in parallel (pytest-xdist): each has its own PostgreSQL, broker and MLflow; most tests wait on
# services, so two share 2 cores well. TEST_WORKERS=0 runs one session in this process.
TEST_WORKERS ?= 2

.PHONY: run test down status lock bench clean-state help

help:
	@echo "make run    start the platform on its embedded defaults (tradeloop up)"
	@echo "make test   run the test suite (real PostgreSQL, broker, MLflow, Dagster)"
	@echo "make down   stop every service (data stays)"
	@echo "make bench  run the benchmarks in benchmarks/"
	@echo "make lock   re-resolve requirements.lock from pyproject.toml"

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "tradeloop needs Python 3.11 (found " + sys.version.split()[0] + "); set PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e . --config-settings editable_mode=compat
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tradeloop up

down: $(STAMP)
	$(BIN)/tradeloop down

status: $(STAMP)
	$(BIN)/tradeloop status

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

bench: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

lock:
	$(BIN)/uv pip compile pyproject.toml --extra test --python-version 3.11 -q -o requirements.lock

clean-state:
	$(BIN)/tradeloop down || true
	rm -rf .tradeloop
