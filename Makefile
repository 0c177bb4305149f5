# ctxcloud: `make run` serves the embedded default; `make test` runs the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test test-embedded test-production lint format install install-test bench clean

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

test-embedded: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint test-embedded

bench: install-test
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .ruff_cache
