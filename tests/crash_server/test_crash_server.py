"""kill -9 of the whole server under concurrent load (issue 9, "Durability under crashes"):
``sluice serve`` runs the workload of tests/crash_server/workload.py (SQL inserts, updates,
deletes, BEGIN…COMMIT, params batches, NDJSON ingest, topic consume+ack, FILE uploads,
flushes and snapshots) and dies — at every named failpoint (``wal.failpoints.REGISTRY`` and
``UPPER_REGISTRY``: a new point gets a case automatically) or by SIGKILL at a seeded random
moment; it restarts on the same directory and tests/crash_server/cycle.py checks that every
acknowledged write is back with its values, in-flight writes are all-or-nothing, topic and
group offsets are consistent, and ``sluice replay --verify`` agrees.

Tiers: the fast tier runs one random kill plus ``FAST_FAILPOINTS`` failpoint case(s) picked by
the base seed (a different one each run; the whole list is in the slow tier, with
``SLOW_RANDOM_CASES`` multi-round random kills). Every failure names its seed; re-run one
with ``SLUICE_CRASH_SEED=<seed>`` (it overrides the seed of every case selected).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.crash_server.cycle import (
    NO_TOPIC_PREFIXES,
    Crash,
    Run,
    crash_round,
    restart_and_check,
    setup,
)
from tests.crash_server.server import failpoint_names

FAST_FAILPOINTS = 1
SLOW_RANDOM_CASES = 100
SLOW_ROUNDS = 3  # crash rounds on one directory per slow random case


def case_seed(base_seed: int, salt: str) -> int:
    override = os.environ.get("SLUICE_CRASH_SEED")
    if override:
        return int(override)
    return random.Random(f"{base_seed}/{salt}").randrange(2**32)


async def run_case(tmp_path: Path, seed: int, failpoint: str | None, rounds: int) -> None:
    run = Run(tmp_path, seed, topics=not (failpoint or "").startswith(NO_TOPIC_PREFIXES))
    try:
        await setup(run)
        for number in range(1, rounds + 1):
            await crash_round(run, Crash.choose(seed, number, failpoint))
            await restart_and_check(run)
    except BaseException as exc:  # any failure, also outside the checks, names the seed
        exc.add_note(f"crash case seed {seed}: re-run with SLUICE_CRASH_SEED={seed}")
        raise


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One case per failpoint; the base seed picks which few are in the fast tier."""
    if "failpoint" not in metafunc.fixturenames:
        return
    names = failpoint_names()
    fast = set(random.Random(metafunc.config.getoption("--seed")).sample(names,
                                                                        FAST_FAILPOINTS))
    metafunc.parametrize("failpoint", [
        pytest.param(name, id=name, marks=[] if name in fast else [pytest.mark.slow])
        for name in names])


async def test_crash_server__killed_at_failpoint__acknowledged_writes_survive(
        tmp_path: Path, base_seed: int, failpoint: str) -> None:
    # The armed server dies (exit 137) at the point's seeded N-th hit mid-workload.
    await run_case(tmp_path, case_seed(base_seed, failpoint), failpoint, rounds=1)


async def test_crash_server__sigkill_at_random_moment__acknowledged_writes_survive(
        tmp_path: Path, base_seed: int) -> None:
    # SIGKILL at a seeded delay after the first acknowledged write; restart; check.
    await run_case(tmp_path, case_seed(base_seed, "random"), None, rounds=1)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(SLOW_RANDOM_CASES))
async def test_crash_server__repeated_sigkills__acknowledged_writes_survive(
        tmp_path: Path, base_seed: int, index: int) -> None:
    # SLOW_ROUNDS kill/restart/check rounds on one directory, the ledger carried over.
    await run_case(tmp_path, case_seed(base_seed, f"slow/{index}"), None, rounds=SLOW_ROUNDS)
