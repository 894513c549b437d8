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

# The main job on the embedded default. Until the server lands this opens (and recovers)
# the write-ahead log in $(DATA)/wal and prints its inspection table.
run: $(STAMP)
	$(VENV)/bin/sluice wal init $(DATA)/wal
	$(VENV)/bin/sluice wal inspect $(DATA)/wal

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
