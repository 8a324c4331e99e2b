# currents-relay: `make run` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
DEMO_HOUR ?= 2026-11-01T10
LANDING ?= $(CURDIR)/data/landing
LAKE ?= $(CURDIR)/data/lake

.DEFAULT_GOAL := help
.PHONY: help install run airflow test lint format bench lock clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv
	$(VENV)/bin/uv pip install -q --python $(PY) --compile-bytecode -r requirements.lock -e .
	@touch $@

install: $(VENV)/.installed ## Create .venv and install the locked dependencies

run: install ## Generate a demo hour and run it through real Airflow (airflow dags test)
	$(PY) -m currents_relay.tools.demo --landing $(LANDING) --lake $(LAKE) --hour $(DEMO_HOUR)

airflow: install ## The real Airflow (UI, scheduler, triggerer) and the partner sandbox on 127.0.0.1 until Ctrl-C
	$(PY) -m currents_relay.tools.local_airflow --port $(or $(PORT),8080) --landing $(LANDING) --lake $(LAKE)

test: install ## Run the whole test suite (what CI runs)
	$(PY) -m pytest

lint: install ## ruff lint and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: install ## ruff format and autofix
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: install ## Benchmarks (figures, not tests): ingest 100k/1M/5M, push 1M at 100 ms an answer (and 5M to two partners), DAG, S3 beside a local disk
	$(PY) benchmarks/ingest.py --events $(or $(EVENTS),1000000)
	$(PY) benchmarks/push.py --events $(or $(EVENTS),1000000)
	$(PY) benchmarks/push.py --events 5000000 --destinations treasure_data,rudderstack
	$(PY) benchmarks/dag.py
	$(PY) benchmarks/object_store.py --events 30000,$(or $(EVENTS),1000000)

lock: ## Re-resolve requirements.lock from pyproject.toml
	$(VENV)/bin/uv pip compile pyproject.toml --extra s3 --extra gcs --extra azure --extra test --python-version 3.11 -o requirements.lock

clean: ## Remove the demo data, the local Airflow home and the venv
	rm -rf data .airflow .benchmarks $(VENV)
