"""One crash round and its checks, shared by the crash tests and the slow tier.

A round: start ``sluice serve`` on the data directory (armed with one failpoint, action
``exit`` from a seeded hit number, or unarmed and SIGKILLed at a seeded moment after the
first acknowledged write), run the workload until the process dies, restart it unarmed on
the same directory, run every check in tests/crash_server/check.py, stop it cleanly and run
``sluice replay --verify``. Rounds repeat on the same directory with the ledger carried over.

Which failpoints a workload reaches, and when to arm them (``ARM_AT``: failpoint name
prefix -> range of the hit number that fires), is listed once here; a failpoint with a new
prefix fails loudly until it gets a row. ``recovery.*`` points fire while the log opens:
the round tears the WAL's tail (half a frame after the last one, as a crash mid-write of an
unacknowledged record leaves it) before starting the armed process.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import trio

from tests.crash_server import check
from tests.crash_server.server import launch, replay_verify, sql
from tests.crash_server.workload import SCHEMA, TOPIC_SCHEMA, Ledger, Workload
from wal import failpoints
from wal.format import encode_frame
from wal.recovery import analyze

# prefix -> (lowest, highest) hit number at which the armed point fires. Start-up crosses
# segment.* once (a fresh log's first segment); file.* fire per flushed segment, manifest,
# checkpoint and topic index; retention.* once per released WAL segment.
ARM_AT = {"wal.": (10, 120), "segment.": (2, 4), "file.": (2, 12), "files.": (2, 8),
          "retention.": (1, 2), "recovery.": (1, 1)}
# Points whose workload must leave the topic out: a topic holds WAL segments for its
# retention time (7 days), so no segment would ever be released.
NO_TOPIC_PREFIXES = ("retention.",)
KILL_DELAY_MAX_S = 2.0
WRITERS = (2, 8)  # concurrent writers per random-kill round (more share group commits)
FSYNC_POLICIES = ("always", "always", "interval:5", "none")
DEATH_TIMEOUT_S = 40.0  # an armed point that has not fired by then is never reached
SIGKILLED = -9


@dataclass
class Crash:
    """How one round ends: at ``failpoint`` (armed from hit ``from_hit``) or by SIGKILL;
    and the round's writer count and WAL fsync policy (random kills vary both)."""

    failpoint: str | None
    from_hit: int = 1
    delay_s: float = 0.0
    writers: int = 4
    fsync: str = "always"

    @staticmethod
    def choose(seed: int, round_number: int, failpoint: str | None) -> Crash:
        rng = random.Random(f"{seed}/crash/{round_number}")
        if failpoint is None:
            return Crash(None, delay_s=rng.uniform(0.05, KILL_DELAY_MAX_S),
                         writers=rng.randint(*WRITERS), fsync=rng.choice(FSYNC_POLICIES))
        return Crash(failpoint, rng.randint(*ARM_AT[prefix_of(failpoint)]))


def prefix_of(failpoint: str) -> str:
    prefixes = [p for p in ARM_AT if failpoint.startswith(p)]
    assert prefixes, f"failpoint {failpoint!r} has no row in ARM_AT (tests/crash_server/cycle.py)"
    return prefixes[0]


@dataclass
class Run:
    tmp_path: Path
    seed: int
    topics: bool = True
    ledger: Ledger = field(default_factory=Ledger)
    rounds: int = 0
    log: list[str] = field(default_factory=list)

    def fail(self, what: str) -> str:
        return (f"seed {self.seed} (re-run: SLUICE_CRASH_SEED={self.seed}), round {self.rounds}: "
                f"{what}\nrounds: {self.log}")


async def setup(run: Run) -> None:
    """First start on an empty directory: the schema, then a clean stop."""
    async with trio.open_nursery() as nursery:
        node = await launch(nursery, run.tmp_path)
        try:
            for text in SCHEMA + (TOPIC_SCHEMA if run.topics else []):
                await sql(node, text)
            await node.stop()
        finally:
            await node.aclose()


def tear_wal_tail(data_dir: Path, seed: int) -> None:
    """Writes the first half of one more frame after the log's last frame."""
    last = analyze(data_dir / "wal").scans[-1]
    frame = encode_frame(last.last_lsn + 1, last.last_lsn, random.Random(seed).randbytes(400))
    with open(last.path, "r+b") as segment:
        segment.seek(last.end_offset)
        segment.write(frame[: len(frame) // 2])


async def crash_round(run: Run, crash: Crash) -> None:
    """Runs the workload until the server dies as ``crash`` says."""
    run.rounds += 1
    spec = f"{crash.failpoint}=exit@{crash.from_hit}" if crash.failpoint else ""
    if crash.failpoint and crash.failpoint.startswith("recovery."):
        tear_wal_tail(run.tmp_path / "data", run.seed)
    async with trio.open_nursery() as nursery:
        node = await launch(nursery, run.tmp_path, failpoints=spec, may_die=True,
                            fsync=crash.fsync)
        try:
            workload = Workload(node, run.ledger, run.seed * 1000 + run.rounds,
                                writers=crash.writers, topics=run.topics)
            async with trio.open_nursery() as inner:
                inner.start_soon(workload.run)
                if crash.failpoint is None:
                    await workload.first_ack.wait()
                    await trio.sleep(crash.delay_s)
                    node.kill()
                code = await node.wait(DEATH_TIMEOUT_S)
                inner.cancel_scope.cancel()
        finally:
            await node.aclose()
    expected = SIGKILLED if crash.failpoint is None else failpoints.EXIT_CODE
    run.log.append(f"{crash} -> exit {code}, {len(run.ledger.unexpected)} unexpected")
    assert code == expected, run.fail(f"server exit {code}, expected {expected} "
                                      f"({crash}); the point was never reached?\n{node.log}")
    assert not run.ledger.unexpected, run.fail(f"rejected writes: {run.ledger.unexpected[:5]}")


async def restart_and_check(run: Run) -> None:
    """Restarts unarmed; every check must pass; clean stop; replay --verify agrees."""
    async with trio.open_nursery() as nursery:
        node = await launch(nursery, run.tmp_path)
        try:
            problems, applied = await check.check_rows(node, run.ledger)
            if run.topics:
                problems += await check.check_topic(node, run.ledger, applied, run.rounds)
            check.resolve_rows(run.ledger, applied)
            problems += await check.check_uploads(node, run.ledger)
            status, body = await check.health(node)
            if status != 200:
                problems.append(f"/health after restart: {status} {body}")
            await node.stop()
        finally:
            await node.aclose()
    assert not problems, run.fail("\n  ".join(["after restart:", *problems]) + "\n" + node.log)
    code, output = await replay_verify(run.tmp_path / "data")
    released = analyze(run.tmp_path / "data" / "wal").scans[0].path.name != (
        "00000000000000000001.wal")
    # Exit 2 = "cannot rebuild: retention released the log's start": expected once it has.
    assert code == 0 or (code == 2 and released), run.fail(
        f"sluice replay --verify exited {code}:\n{output}")
