"""kill -9 during a SQL workload, then restart: every acknowledged write is back, no
transaction is half applied, and the projections equal a rebuild from the log.

A child process (``child_sql_workload.py``) opens the engine on a data dir and runs seeded
autocommit INSERT/UPDATE/DELETE statements and multi-statement ``BEGIN ... COMMIT``
transactions from several concurrent trio tasks, printing each statement before it runs
(``try``) and after ``engine.execute`` returned (``ack``). The parent SIGKILLs it after a seeded
random delay, reopens the directory in this process and checks the rows against a model
built from those lines:

- an acknowledged statement's effect is present with the same values; the one statement
  each task may have had in flight is either fully applied or not at all;
- a transaction's rows carry its id and row count, so a half-applied one shows up (too few
  rows, a txlog row without rows, a SHARED marker row not naming the task's newest
  transaction, an older transaction dropped by it still partly there);
- ``sluice replay --verify DIR`` (the console script next to ``sys.executable``) says the
  checkpoints + segments + WAL tail equal a full replay of the log (exit 0).

The flush variant flushes some partitions every few statements and kills right after a
flush, so the restart reads cold segments plus a WAL tail.

A process kill keeps the OS page cache: this covers process crashes (power loss is the WAL
suite's job). Replay a failure with ``--seed <the seed printed in the message>``.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from engine.engine import Engine, open_engine
from engine.query import visible_rows
from tests.engine.child_sql_workload import CONFIG, MARKER_BASE

CHILD = Path(__file__).with_name("child_sql_workload.py")
SLUICE = Path(sys.executable).with_name("sluice")
CHILD_TIMEOUT_SECONDS = 60
KILL_DELAY_MAX_SECONDS = 0.6
FLUSH_KILL_DELAY_MAX_SECONDS = 0.02
RANDOM_KILLS = 3
SLOW_RANDOM_KILLS = 40
FLUSH_KILLS = 1
SLOW_FLUSH_KILLS = 20


@dataclass
class ChildRun:
    returncode: int | None
    lines: list[str]  # complete lines only (a line cut by the kill is dropped)
    stderr: str
    tries: dict[tuple[int, int], dict] = field(default_factory=dict)  # (task, seq) -> op
    acked: set[tuple[int, int]] = field(default_factory=set)
    flushes: int = 0

    def __post_init__(self) -> None:
        for line in self.lines:
            word, _, rest = line.partition(" ")
            if word == "try":
                task, seq, op = rest.split(" ", 2)
                self.tries[(int(task), int(seq))] = json.loads(op)
            elif word == "ack":
                task, seq = rest.split()
                self.acked.add((int(task), int(seq)))
            elif word == "flushed":
                self.flushes += 1

    def describe(self) -> str:
        return (f"exit status {self.returncode}; {len(self.acked)} acknowledged, "
                f"{self.flushes} flushes; last lines {self.lines[-3:]}; stderr:\n"
                f"{self.stderr[-3000:]}")


async def _drain(stream: trio.abc.ReceiveStream, into: bytearray, trigger: bytes,
                 count: int, seen: trio.Event) -> None:
    async for chunk in stream:
        into += chunk
        if into.count(b"\n" + trigger) >= count:
            seen.set()


async def _kill_after(seen: trio.Event, delay: float, process: trio.Process) -> None:
    await seen.wait()
    await trio.sleep(delay)
    process.kill()


async def run_child(data_dir: Path, seed: int, *, delay: float, trigger: str = "ack",
                    trigger_count: int = 1, flush_every: int = 0) -> ChildRun:
    """Runs the child and SIGKILLs it ``delay`` seconds after its ``trigger_count``-th line
    starting with ``trigger``; returns what it printed."""
    command = [sys.executable, str(CHILD), str(data_dir), "--seed", str(seed),
               "--flush-every", str(flush_every)]
    process = await trio.lowlevel.open_process(command, stdout=-1, stderr=-1)
    out, err, seen = bytearray(b"\n"), bytearray(), trio.Event()
    async with trio.open_nursery() as nursery:
        assert process.stdout is not None and process.stderr is not None
        nursery.start_soon(_drain, process.stdout, out, trigger.encode() + b" ",
                           trigger_count, seen)
        nursery.start_soon(_drain, process.stderr, err, b"\0", 1, trio.Event())
        with trio.move_on_after(CHILD_TIMEOUT_SECONDS):
            async with trio.open_nursery() as killer:
                killer.start_soon(_kill_after, seen, delay, process)
                await process.wait()  # killed, or exited on its own (an error: see stderr)
                killer.cancel_scope.cancel()
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = out.decode()[1:].split("\n")[:-1]  # drops the unfinished last line
    return ChildRun(process.returncode, lines, err.decode(errors="replace"))


# ---- the model ---------------------------------------------------------------------------


Row = tuple[str, int] | None  # (v, n) of a kv/notes row, None when absent


@dataclass
class TaskModel:
    """What one task's printed lines allow: its acknowledged effects and its in-flight op."""

    rows: dict[tuple[str, int], Row] = field(default_factory=dict)  # (table, k) -> acked
    in_flight: dict | None = None
    txn_present: set[int] = field(default_factory=set)  # acked, not dropped by an acked txn
    txn_dropped: set[int] = field(default_factory=set)
    touched: set[tuple[str, int]] = field(default_factory=set)


def build_models(run: ChildRun) -> tuple[dict[int, TaskModel], list[str]]:
    models: dict[int, TaskModel] = defaultdict(TaskModel)
    problems = []
    by_task: dict[int, list[int]] = defaultdict(list)
    for task, seq in run.tries:
        by_task[task].append(seq)
    for task, seqs in by_task.items():
        model = models[task]
        seqs.sort()
        for seq in seqs:
            op = run.tries[(task, seq)]
            if op["kind"] != "txn":
                model.touched.add((op["table"], op["k"]))
            if (task, seq) not in run.acked:
                if seq != seqs[-1]:
                    problems.append(f"task {task}: statement {seq} was never acknowledged "
                                    f"but the task went on")
                model.in_flight = op
                continue
            if op["kind"] == "txn":
                model.txn_present.add(op["txn"])
                if op["drop"] is not None:
                    model.txn_present.discard(op["drop"])
                    model.txn_dropped.add(op["drop"])
            else:
                model.rows[(op["table"], op["k"])] = _apply(op)
    return models, problems


def _apply(op: dict) -> Row:
    return None if op["kind"] == "delete" else (op["v"], op["n"])


def read_state(engine: Engine, tasks: list[int]) -> dict[str, dict]:
    """Every live row of the workload's tables: kv by key; notes/tx/txlog by (task, key)."""
    now_ms = engine.clock.now_ms()

    def rows(name: str, user: str | None) -> list[dict]:
        table = engine.catalog.table("app", name)
        assert table is not None, f"table app.{name} is missing after restart"
        return visible_rows(table, engine.store, user or "", now_ms).to_pylist()

    state: dict[str, dict] = {"kv": {r["k"]: r for r in rows("kv", None)},
                              "notes": {}, "tx": {}, "txlog": {}}
    for task in tasks:
        user = f"w{task}"
        state["notes"].update({(task, r["k"]): r for r in rows("notes", user)})
        state["tx"].update({(task, r["id"]): r for r in rows("tx", user)})
        state["txlog"].update({(task, r["txn"]): r for r in rows("txlog", user)})
    return state


def check_rows(models: dict[int, TaskModel], state: dict[str, dict]) -> list[str]:
    """Autocommit kv/notes rows: acked effects exact, in-flight all-or-nothing, no strays."""
    problems = []
    for task, model in models.items():
        for table, key in sorted(model.touched):
            acked = model.rows.get((table, key))
            allowed = [acked]
            op = model.in_flight
            if op is not None and op["kind"] != "txn" and (op["table"], op["k"]) == (table,
                                                                                     key):
                allowed.append(_apply(op))
            row = state[table].get(key if table == "kv" else (task, key))
            actual = None if row is None else (row["v"], row["n"])
            if actual not in allowed:
                problems.append(f"task {task} {table} k={key}: found {actual}, acknowledged "
                                f"state {acked}, allowed {allowed}")
    known_kv = {k for m in models.values() for (t, k) in m.touched if t == "kv"}
    known_kv |= {MARKER_BASE + task for task in models}
    for key in state["kv"]:
        if key not in known_kv:
            problems.append(f"kv k={key} exists but no statement wrote it")
    for task, key in state["notes"]:
        if ("notes", key) not in models[task].touched:
            problems.append(f"notes of w{task} k={key} exists but no statement wrote it")
    return problems


def check_transactions(models: dict[int, TaskModel], state: dict[str, dict]) -> list[str]:
    """Each transaction is all there or not at all, acked ones are there, the marker names
    the newest one."""
    problems = []
    groups: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for (task, _), row in state["tx"].items():
        groups[(task, row["txn"])].append(row)
    for (task, txn), rows in sorted(groups.items()):
        total = rows[0]["total"]
        expected = {(txn * 100 + i, i, total, f"t{txn}-{i}") for i in range(total)}
        found = {(r["id"], r["idx"], r["total"], r["v"]) for r in rows}
        if found != expected:
            problems.append(f"txn {txn} of w{task} is half applied: rows {sorted(found)}")
        log = state["txlog"].get((task, txn))
        if log is None or log["total"] != total:
            problems.append(f"txn {txn} of w{task}: {len(rows)} rows but txlog row {log}")
    for (task, txn), log in state["txlog"].items():
        if (task, txn) not in groups:
            problems.append(f"txn {txn} of w{task}: txlog row {log} without its rows")
    for task, model in models.items():
        present = {txn for (t, txn) in state["txlog"] if t == task}
        must = set(model.txn_present)
        may = set(must)
        op = model.in_flight
        if op is not None and op["kind"] == "txn":
            may.add(op["txn"])
            if op["drop"] is not None:
                must.discard(op["drop"])
            # Applied or not, the in-flight transaction is whole: it dropped its victim iff
            # its own rows are there.
            if op["drop"] is not None and (op["txn"] in present) == (op["drop"] in present):
                problems.append(f"in-flight txn {op['txn']} of w{task} (dropping "
                                f"{op['drop']}) is half applied: present {sorted(present)}")
        if not must <= present:
            problems.append(f"w{task}: acknowledged transactions {sorted(must - present)} "
                            f"are missing")
        if not present <= may:
            problems.append(f"w{task}: transactions {sorted(present - may)} are present but "
                            f"were dropped or never ran")
        marker = state["kv"].get(MARKER_BASE + task)
        newest = max(present, default=None)
        want = None if newest is None else (f"T{newest}", state["txlog"][(task, newest)]["total"])
        got = None if marker is None else (marker["v"], marker["n"])
        if got != want:
            problems.append(f"w{task}: marker row {got}, but the newest transaction present "
                            f"is {want}")
    return problems


async def check_restart(data_dir: Path, run: ChildRun, seed: int) -> None:
    models, problems = build_models(run)
    assert run.acked, f"--seed {seed}: the child acknowledged nothing; {run.describe()}"
    async with open_engine(data_dir, CONFIG) as engine:
        state = read_state(engine, sorted(models))
    problems += check_rows(models, state)
    problems += check_transactions(models, state)
    assert not problems, (f"--seed {seed}: {len(problems)} problem(s) after restart:\n"
                          + "\n".join(problems[:30]) + f"\nchild: {run.describe()}")
    done = await trio.to_thread.run_sync(lambda: subprocess.run(
        [str(SLUICE), "replay", "--verify", str(data_dir)], capture_output=True, text=True,
        timeout=120, check=False))
    assert done.returncode == 0, (f"--seed {seed}: sluice replay --verify exit "
                                  f"{done.returncode}\n{done.stdout}\n{done.stderr}")
    assert "identical" in done.stdout


def _kill_params(count: int, slow_count: int) -> list[object]:
    return [pytest.param(i, marks=[pytest.mark.slow] if i >= count else [])
            for i in range(count + slow_count)]


@pytest.mark.parametrize("index", _kill_params(RANDOM_KILLS, SLOW_RANDOM_KILLS))
async def test_restart_kill__sigkill_at_a_random_moment__acked_writes_back_and_txns_whole(
        tmp_path: Path, base_seed: int, index: int) -> None:
    # SIGKILL a seeded delay after the first acknowledged statement; reopen and compare.
    seed = (base_seed + index) % 2**32
    delay = random.Random(seed).uniform(0, KILL_DELAY_MAX_SECONDS)
    run = await run_child(tmp_path / "data", seed, delay=delay)
    assert run.returncode == -signal.SIGKILL, f"--seed {seed}: {run.describe()}"
    await check_restart(tmp_path / "data", run, seed)


@pytest.mark.parametrize("index", _kill_params(FLUSH_KILLS, SLOW_FLUSH_KILLS))
async def test_restart_kill__right_after_a_flush__cold_segments_plus_wal_tail(
        tmp_path: Path, base_seed: int, index: int) -> None:
    # Flush some partitions every few statements; SIGKILL just after the k-th flush.
    seed = (base_seed + 1000 + index) % 2**32
    rng = random.Random(seed)
    flushes, delay = rng.randint(1, 3), rng.uniform(0, FLUSH_KILL_DELAY_MAX_SECONDS)
    run = await run_child(tmp_path / "data", seed, delay=delay, trigger="flushed",
                          trigger_count=flushes, flush_every=rng.randint(8, 20))
    assert run.returncode == -signal.SIGKILL, f"--seed {seed}: {run.describe()}"
    assert run.flushes >= flushes, f"--seed {seed}: {run.describe()}"
    assert list((tmp_path / "data" / "tables").rglob("seg-*.arrow")), \
        f"--seed {seed}: the flushes wrote no segment"
    await check_restart(tmp_path / "data", run, seed)
