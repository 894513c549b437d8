# Two commands for a fresh clone: `make run` and `make test`. Everything else is a helper.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   ?= ./data

.PHONY: install run test test-slow fuzz bench bench-engine lint clean

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

bench: $(STAMP)
	$(PY) -m bench.wal_group_commit

# SQL through the engine next to SQLite (~4 minutes; --quick for a smoke run).
bench-engine: $(STAMP)
	$(PY) -m bench.engine_sql

lint: $(STAMP)
	$(VENV)/bin/ruff check wal engine api tools tests fuzz bench

clean:
	rm -rf $(VENV) build *.egg-info
