"""Child process for ``test_restart_kill.py``: runs a seeded SQL workload against an engine
from several concurrent trio tasks until the parent SIGKILLs it.

Usage: child_sql_workload.py DATA_DIR --seed N [--tasks 4] [--flush-every 0]
       [--max-seconds 20]

Each task ``t`` is the session ``w<t>`` with role ``service`` and owns its keys, so its
statements never race another task's on the same row:

- autocommit ``INSERT``/``UPDATE``/``DELETE`` of keys ``t*1000 .. t*1000+KEYS_PER_TASK-1`` in
  ``app.kv`` (SHARED) or in its own partition of ``app.notes`` (USER);
- explicit transactions ``BEGIN; ...; COMMIT`` with id ``T = t*10**6 + n``: ``total`` rows
  ``(id = T*100 + idx, txn = T, idx, total, v = 't<T>-<idx>')`` into ``app.tx`` (USER), one
  row ``(txn = T, total)`` into ``app.txlog`` (USER), the marker row ``k = MARKER_BASE + t``
  of ``app.kv`` (SHARED) set to ``'T<T>'``, and sometimes the deletion of an older
  transaction ``D`` of the task (its tx rows and its txlog row). So a transaction touches two
  USER tables and a SHARED one, and a half-applied one is visible as a txn with fewer than
  ``total`` rows, a txlog row without rows (or the reverse), or a marker that is not the
  task's newest transaction.

With ``--flush-every N`` a flusher task flushes a seeded choice of partitions
(``flush_partition``) after each N acknowledged statements, so a kill lands on cold segments
plus a WAL tail, next to partitions that only live in the log.

Protocol on stdout, one line per fact, written and flushed only after the fact, so every
complete line is true even if the process dies right after writing it:
    open <committed_lsn>        the engine is open (recovery and replay done)
    try <task> <seq> <json>     the task is about to execute statement <seq> (described)
    ack <task> <seq>            engine.execute returned for it: it is acknowledged
    flushed <rows>              a flush round finished (rows written to segments)
Exit status: 3 if nothing killed it within --max-seconds; 4 on an unexpected engine error.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import trio

from engine.config import EngineConfig
from engine.engine import Engine, open_engine
from engine.flush import flush_partition
from engine.session import Session

KEYS_PER_TASK = 12
MARKER_BASE = 900_000
TXN_ROWS_MAX = 6
NOT_KILLED_EXIT_CODE = 3
ENGINE_ERROR_EXIT_CODE = 4
# bcrypt cost is irrelevant (no users are created); background jobs stay off so that every
# flush is one this script made on purpose.
CONFIG = EngineConfig(bcrypt_cost=4, jobs_interval_seconds=3600)
ROOT = Session("root", "system")
SCHEMA = (
    "CREATE NAMESPACE IF NOT EXISTS app; "
    "CREATE SHARED TABLE IF NOT EXISTS app.kv (k INT PRIMARY KEY, v TEXT, n INT); "
    "CREATE USER TABLE IF NOT EXISTS app.notes (k INT PRIMARY KEY, v TEXT, n INT); "
    "CREATE USER TABLE IF NOT EXISTS app.tx (id BIGINT PRIMARY KEY, txn BIGINT NOT NULL, "
    "idx INT, total INT, v TEXT); "
    "CREATE USER TABLE IF NOT EXISTS app.txlog (txn BIGINT PRIMARY KEY, total INT)"
)


def session_of(task: int) -> Session:
    return Session(f"w{task}", "service")


class Child:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.acked = 0
        self.flush_wanted = trio.Event()

    def emit(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    async def run_statement(self, engine: Engine, task: int, seq: int, op: dict,
                            sql: str, params: list | None = None) -> None:
        self.emit(f"try {task} {seq} {json.dumps(op, separators=(',', ':'))}")
        try:
            await engine.execute(session_of(task), sql, params)
        except Exception:
            sys.stderr.write(f"task {task} statement {seq} failed: {op}\n{sql}\n")
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            os._exit(ENGINE_ERROR_EXIT_CODE)
        self.emit(f"ack {task} {seq}")
        self.acked += 1
        every = self.args.flush_every
        if every and self.acked % every == 0:
            self.flush_wanted.set()

    async def worker(self, engine: Engine, task: int) -> None:
        rng = random.Random(f"{self.args.seed}/{task}")
        present: dict[tuple[str, int], bool] = {}  # (table, key) -> live per this task's acks
        committed: list[int] = []  # this task's transactions still present
        for seq in range(10**9):
            if rng.random() < 0.3:
                txn = task * 10**6 + seq
                total = rng.randint(1, TXN_ROWS_MAX)
                drop = committed.pop(rng.randrange(len(committed))) \
                    if committed and rng.random() < 0.4 else None
                op = {"kind": "txn", "txn": txn, "total": total, "drop": drop}
                await self.run_statement(engine, task, seq, op, _txn_sql(task, txn, total, drop,
                                                                         present))
                present[("kv", MARKER_BASE + task)] = True
                committed.append(txn)
            else:
                table = rng.choice(["kv", "notes"])
                key = task * 1000 + rng.randrange(KEYS_PER_TASK)
                value, number = f"v{rng.randrange(10**6)}", rng.randrange(-1000, 1000)
                live = present.get((table, key), False)
                if not live:
                    kind = "insert"
                    sql = f"INSERT INTO app.{table} (k, v, n) VALUES ($1, $2, $3)"
                    params = [key, value, number]
                elif rng.random() < 0.6:
                    kind = "update"
                    sql = f"UPDATE app.{table} SET v = $1, n = $2 WHERE k = $3"
                    params = [value, number, key]
                else:
                    kind = "delete"
                    sql = f"DELETE FROM app.{table} WHERE k = $1"
                    params = [key]
                op = {"kind": kind, "table": table, "k": key, "v": value, "n": number}
                await self.run_statement(engine, task, seq, op, sql, params)
                present[(table, key)] = kind != "delete"
            await trio.lowlevel.checkpoint()

    async def flusher(self, engine: Engine) -> None:
        rng = random.Random(f"{self.args.seed}/flush")
        while True:
            await self.flush_wanted.wait()
            self.flush_wanted = trio.Event()
            rows = 0
            for part in list(engine.store.partitions.values()):
                if rng.random() < 0.7:  # some partitions: others stay hot (log-only)
                    rows += await flush_partition(engine, part)
            self.emit(f"flushed {rows}")


def _txn_sql(task: int, txn: int, total: int, drop: int | None,
             present: dict[tuple[str, int], bool]) -> str:
    marker = MARKER_BASE + task
    values = ", ".join(f"({txn * 100 + idx}, {txn}, {idx}, {total}, 't{txn}-{idx}')"
                       for idx in range(total))
    parts = ["BEGIN",
             f"INSERT INTO app.tx (id, txn, idx, total, v) VALUES {values}"]
    if drop is not None:
        parts += [f"DELETE FROM app.tx WHERE txn = {drop}",
                  f"DELETE FROM app.txlog WHERE txn = {drop}"]
    parts.append(f"INSERT INTO app.txlog (txn, total) VALUES ({txn}, {total})")
    if present.get(("kv", marker), False):
        parts.append(f"UPDATE app.kv SET v = 'T{txn}', n = {total} WHERE k = {marker}")
    else:
        parts.append(f"INSERT INTO app.kv (k, v, n) VALUES ({marker}, 'T{txn}', {total})")
    parts.append("COMMIT")
    return "; ".join(parts)


async def main(args: argparse.Namespace) -> None:
    child = Child(args)
    async with open_engine(args.data_dir, CONFIG) as engine:
        await engine.execute(ROOT, SCHEMA)
        child.emit(f"open {int(engine.wal.committed_lsn)}")
        with trio.move_on_after(args.max_seconds):
            async with trio.open_nursery() as nursery:
                if args.flush_every:
                    nursery.start_soon(child.flusher, engine)
                for task in range(args.tasks):
                    nursery.start_soon(child.worker, engine, task)
    os._exit(NOT_KILLED_EXIT_CODE)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--flush-every", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=20)
    trio.run(main, parser.parse_args())
