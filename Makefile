# Two commands for a fresh clone: `make run` and `make test`. Everything else is a helper.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   ?= ./data

.PHONY: install run test test-slow fuzz bench bench-wal bench-engine bench-http bench-live bench-topics lint clean

# Creates or updates .venv with the pinned dependencies (re-runs when pyproject.toml changes).
install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $$(sh tools/find_python.sh) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The main job on the embedded default: `sluice serve` on 127.0.0.1:2900 with data in
# $(DATA) (a generated JWT secret is kept there). Today it serves the health endpoints and
# POST /v1/api/sql; the auth endpoints and ingestion are the open HTTP issue. Ctrl-C stops it.
run: $(STAMP)
	KALAMDB_DATA_DIR=$(DATA) $(VENV)/bin/sluice serve

# The whole default suite (target: under 5 minutes on 2 cores), after the linter.
test: $(STAMP)
	$(VENV)/bin/ruff check wal engine api tools tests fuzz bench
	$(PY) -m pytest -q

# Slow tier: thousands of crash seeds, random-delay kills, long fuzz runs.
test-slow: $(STAMP)
	$(PY) -m pytest -q --run-slow

fuzz: $(STAMP)
	$(PY) -m fuzz.wal_frames --seconds 300

# Every benchmark below in one run, with progress lines, then bench/results/report/: REPORT.md
# (one markdown table), each bench's report and JSON, and PNG plots (throughput vs
# connections, latency percentiles, Sluice vs the peers of the same run). About 30 minutes;
# QUICK=1 for a smoke run (a few minutes). matplotlib comes from the `bench` extra.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench.report $(if $(QUICK),--quick) $(ARGS)

# The WAL alone: durable appends/s and latency next to the disk's ceiling (~3 minutes).
bench-wal: $(STAMP)
	$(PY) -m bench.wal_group_commit $(ARGS)

# SQL through the engine next to SQLite (~4 minutes; --quick for a smoke run).
bench-engine: $(STAMP)
	$(PY) -m bench.engine_sql

# HTTP routes under wrk next to the bare ASGI ceiling and PostgreSQL (~12 minutes; installs wrk
# and PostgreSQL from Debian packages when missing). Options: make bench-http ARGS=--quick
bench-http: $(STAMP)
	$(PY) -m bench.http_api $(ARGS)

# Live queries over /v1/ws: initial load, change latency with 1/100/10,000 subscriptions,
# memory per subscription (a few minutes; ARGS=--quick for a smoke run).
bench-live: $(STAMP)
	$(PY) -m bench.live $(ARGS)

# Topics: HTTP consume + ack of a 1M-message topic in batches of 1/100/1,000 and the cost of
# publishing, next to Redis streams (appendfsync always; redis-server from Debian packages,
# redis-py from the `bench` extra). About 5 minutes; ARGS=--quick for a smoke run.
bench-topics: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench.topics $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check wal engine api tools tests fuzz bench

clean:
	rm -rf $(VENV) build *.egg-info
