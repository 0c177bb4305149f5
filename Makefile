# ctxcloud: `make run` serves the embedded default; `make test` runs the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test test-embedded test-production services lint audit fuzz format install install-test bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/activate
	$(BIN)/pip install --quiet -c constraints.txt -e .

install-test: $(BIN)/activate
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	$(BIN)/pip install --quiet -c constraints.txt -e ./plugins/storage_gcs
	$(BIN)/pip install --quiet -c constraints.txt -e ./plugins/storage_azure
	$(BIN)/pip install --quiet -c constraints.txt -e "./client[mcp]"

run: install
	$(BIN)/ctxcloud db upgrade
	GUNICORN_BIND=$(HOST):$(PORT) $(BIN)/gunicorn -c config/gunicorn.conf.py wsgi:app

# Style, and bandit's static security checks (reviewed findings carry `# nosec BXXX`).
lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/bandit -q -c pyproject.toml -r app plugins client/ctxcloud_client

# Known vulnerabilities in the pinned dependencies (warns, passes, if the service is unreachable).
audit: install-test
	$(BIN)/python .ci/audit

# Release check: the schemathesis fuzz test with many more examples and a fresh seed, on both
# stacks; the seed is printed, so a failure reproduces with `make fuzz FUZZ_SEED=...`.
FUZZ_EXAMPLES ?= 300
ifndef FUZZ_SEED
FUZZ_SEED := $(shell date +%s)
endif
FUZZ := CTXCLOUD_FUZZ_MAX_EXAMPLES=$(FUZZ_EXAMPLES) CTXCLOUD_FUZZ_SEED=$(FUZZ_SEED) \
	CTXCLOUD_FUZZ_TIMEOUT=3600 $(BIN)/python -m pytest -p no:cacheprovider -o timeout=7200 \
	tests/security/test_fuzz.py $(PYTEST_ARGS)
fuzz: install-test
	$(FUZZ)
	CTXCLOUD_TEST_STACK=production $(FUZZ)

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The tiers run on TEST_WORKERS processes (pytest-xdist; `TEST_WORKERS=0` runs in one), a test
# module's tests in one process (--dist loadfile: its module-scoped servers start once). Each
# process has its own database, Redis database and data folders (tests/stack.py), so they never
# disturb each other.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile

# The whole suite on the embedded default (SQLite, local files, in-process limits).
test-embedded: install-test
	$(BIN)/python -m pytest -p no:cacheprovider $(XDIST) $(PYTEST_ARGS)

# The same suite on the production stack: PostgreSQL and Redis on loopback (`make services`),
# S3 from moto over HTTP (started by the tests). Unreachable services fail, never skip. Then the
# API subset marked every_backend once more with the objects on GCS and on Azure (emulators).
test-production: install-test
	CTXCLOUD_TEST_STACK=production $(BIN)/python -m pytest -p no:cacheprovider -m "not slow" \
		$(XDIST) $(PYTEST_ARGS)
	CTXCLOUD_TEST_STACK=production CTXCLOUD_TEST_STORAGE=gcs $(BIN)/python -m pytest \
		-p no:cacheprovider -m "every_backend and not slow" $(PYTEST_ARGS)
	CTXCLOUD_TEST_STACK=production CTXCLOUD_TEST_STORAGE=azure $(BIN)/python -m pytest \
		-p no:cacheprovider -m "every_backend and not slow" $(PYTEST_ARGS)

services:
	.ci/services

# Every part runs even when one before it fails, and the summary names what failed; the exit
# status fails if any did. Tests run in a random order (pytest-randomly prints the seed;
# `make test-embedded PYTEST_ARGS="-p randomly --randomly-seed=N"` replays an order).
test: install-test
	@failed=""; \
	$(MAKE) --no-print-directory lint || failed="$$failed lint"; \
	$(MAKE) --no-print-directory audit || failed="$$failed audit"; \
	$(MAKE) --no-print-directory test-embedded || failed="$$failed embedded-tier"; \
	$(MAKE) --no-print-directory test-production || failed="$$failed production-tier"; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; \
	echo "make test: lint, audit, the embedded tier and the production tier all passed"

bench: install-test
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .ruff_cache
