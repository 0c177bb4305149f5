# ctxcloud: `make run` serves the embedded default; `make test` runs the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test test-embedded test-production services lint format install install-test bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/activate
	$(BIN)/pip install --quiet -c constraints.txt -e .

install-test: $(BIN)/activate
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"

run: install
	$(BIN)/ctxcloud db upgrade
	GUNICORN_BIND=$(HOST):$(PORT) $(BIN)/gunicorn -c config/gunicorn.conf.py wsgi:app

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The whole suite on the embedded default (SQLite, local files, in-process limits).
test-embedded: install-test
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# The same suite on the production stack: PostgreSQL and Redis on loopback (`make services`),
# S3 from moto over HTTP (started by the tests). Unreachable services fail, never skip.
test-production: install-test
	CTXCLOUD_TEST_STACK=production $(BIN)/python -m pytest -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)

services:
	.ci/services

test: lint test-embedded test-production

bench: install-test
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .ruff_cache
