# EmoLoop entry points. `make run` and `make test` work on a fresh machine of this kind:
# each installs what is missing first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

# `make test` runs on real services: PostgreSQL and Redis on this machine.
TEST_ENV := EMOLOOP_DEV=true \
	DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/emoloop} \
	CELERY_BROKER_URL=$${TEST_BROKER_URL:-redis://127.0.0.1:6379/15} \
	CELERY_RESULT_BACKEND=$${TEST_BROKER_URL:-redis://127.0.0.1:6379/15} \
	CACHE_URL=$${TEST_CACHE_URL:-redis://127.0.0.1:6379/14} \
	EMOLOOP_DATA_DIR=$(CURDIR)/var/test

.PHONY: run test test-fast install frontend browser services lint fmt bench-ingest bench-queue bench-annotator bench-learner bench-active-learning clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) frontend browser

## frontend: wavesurfer.js from npm into static/vendor (no-op when up to date; no CDN).
frontend:
	bash scripts/vendor-frontend.sh

## browser: Debian's Chromium for the browser tests (no-op when installed).
browser:
	bash scripts/install-chromium.sh

# Start PostgreSQL and Redis if they are down (CI machines have them installed).
services:
	@bash scripts/ensure-services.sh

## run: the platform on embedded defaults (SQLite, filesystem broker), with demo data.
run: $(STAMP) frontend
	EMOLOOP_DEV=true DEBUG=$${DEBUG:-true} $(PY) manage.py migrate --no-input -v0
	EMOLOOP_DEV=true $(PY) manage.py collectstatic --no-input -v0
	EMOLOOP_DEV=true $(PY) manage.py seed_demo
	@echo "EmoLoop on http://$(HOST):$(PORT)/  (API docs: /api/docs/, admin: /admin/)"
	EMOLOOP_DEV=true HOST=$(HOST) PORT=$(PORT) $(VENV)/bin/honcho -f Procfile start

## test: the whole suite on PostgreSQL, Redis and a real Celery worker.
test: $(STAMP) frontend browser services
	$(TEST_ENV) $(PY) -m pytest $(ARGS)

## test-fast: skip slow and browser tests.
test-fast: $(STAMP) frontend services
	$(TEST_ENV) $(PY) -m pytest -m "not slow and not browser" $(ARGS)

## lint: ruff, mypy (django-stubs, DRF stubs; strict on the Django-free cores) and the
## import contracts of .importlinter. The test suite runs the same checks (tests/test_static_checks.py).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	EMOLOOP_DEV=true $(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench-ingest: $(STAMP) services
	$(TEST_ENV) $(PY) manage.py migrate --no-input -v0
	$(TEST_ENV) $(PY) -m bench.ingest

# Both annotator flows at 1,000,000 clips, in a database of its own (emoloop_bench_queue_v1_*)
# on DATABASE_URL's server, seeded once and kept for later runs (ARGS="--drop-db" drops it).
# The earlier 100,000-clip asyncio bench: python -m bench.queue_load.
bench-queue: $(STAMP) services
	$(TEST_ENV) $(PY) -m bench.queue $(ARGS)

bench-learner: $(STAMP)
	EMOLOOP_DEV=true $(PY) -m bench.learner_loso $(ARGS)

bench-active-learning: $(STAMP)
	EMOLOOP_DEV=true $(PY) -m bench.active_learning $(ARGS)

# Creates, fills and drops its own database (emoloop_bench_export) on DATABASE_URL's server.
.PHONY: bench-export
bench-export: $(STAMP) services
	$(TEST_ENV) $(PY) -m bench.export $(ARGS)

bench-annotator: $(STAMP) frontend browser services
	$(TEST_ENV) $(PY) manage.py migrate --no-input -v0
	$(TEST_ENV) $(PY) -m bench.annotator_flow $(ARGS)

# Creates, fills and drops its own database (emoloop_bench_console) on DATABASE_URL's server.
.PHONY: bench-console
bench-console: $(STAMP) services
	$(TEST_ENV) $(PY) -m bench.console $(ARGS)

# Creates, fills and drops its own database (emoloop_bench_loop) on DATABASE_URL's server and
# starts (and stops) its own Celery worker on queues of its own.
.PHONY: bench-loop-latency
bench-loop-latency: $(STAMP) services
	$(TEST_ENV) $(PY) -m bench.loop_latency $(ARGS)

# Three hosts in network namespaces (needs root): rescoring with one worker host, then two.
# Creates and drops its own database (emoloop_bench_cluster_<pid>) on DATABASE_URL's server.
.PHONY: bench-cluster
bench-cluster: $(STAMP) services
	$(TEST_ENV) $(PY) -m bench.cluster $(ARGS)

clean:
	rm -rf var/test .pytest_cache .mypy_cache
