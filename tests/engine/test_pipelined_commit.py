"""Pipelined row commits (engine/engine.py, engine/partition.py): statements queued behind a
slow WAL write share one fsync, stay invisible until durable, still block duplicate keys,
and all fail with nothing left behind when the write fails."""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import trio
import trio.testing

from engine.clock import ManualClock
from engine.engine import Engine, open_engine
from engine.errors import AlreadyExists, EngineError, StorageUnavailable
from engine.partition import Partition, storage_schema
from tests.engine.harness import CONFIG, ROOT, rows, sql
from wal import FileIO

SETUP = ("CREATE NAMESPACE app; "
         "CREATE SHARED TABLE app.t (id INT PRIMARY KEY, v TEXT); "
         "INSERT INTO app.t (id, v) VALUES (100, 'old')")
IN_FLIGHT = [f"INSERT INTO app.t (id, v) VALUES ({i}, 'n{i}')" for i in range(1, 6)] + [
    "UPDATE app.t SET v = 'new' WHERE id = 100", "DELETE FROM app.t WHERE id = 1"]


class _GatedIO(FileIO):
    """Real file I/O that, once ``armed``, holds the next ``pwrite`` (the WAL's batch write)
    until ``release`` is set, then performs it — or fails it with EIO when ``fail``."""

    def __init__(self, *, fail: bool) -> None:
        self.fail = fail
        self.armed = False
        self.holding = threading.Event()
        self.release = threading.Event()

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        if self.armed:
            self.armed = False
            self.holding.set()
            assert self.release.wait(10)
            if self.fail:
                raise OSError(errno.EIO, "injected EIO on the held WAL write")
        super().pwrite(fd, data, offset)


async def _in_flight(engine: Engine, io: _GatedIO, outcomes: dict[int, Any],
                     nursery: trio.Nursery) -> None:
    """Holds the first statement's WAL write; queues the others behind it (each one's
    event is in the WAL queue, the write lock free again) and returns."""
    async def run(i: int) -> None:
        try:
            outcomes[i] = await sql(engine, ROOT, IN_FLIGHT[i])
        except EngineError as exc:
            outcomes[i] = exc

    io.armed = True
    nursery.start_soon(run, 0)
    await trio.to_thread.run_sync(io.holding.wait, 10)
    for i in range(1, len(IN_FLIGHT)):
        nursery.start_soon(run, i)
        # Queued in order, one at a time. Polled: UPDATE/DELETE match in a worker thread,
        # so "all tasks blocked" does not mean "queued", and the engine has no such event.
        with trio.fail_after(10):
            while len(engine._queued) < i + 1:  # noqa: ASYNC110
                await trio.sleep(0.001)
    assert not engine.write_lock.locked()


async def test_pipelined_commit__queued_behind_a_held_write__invisible_then_one_shared_fsync(
        tmp_path: Path) -> None:
    # Statement 0's write is held; six more statements queue behind it. Readers see none of
    # them, a duplicate key is refused; on release the six share one fsync and all show.
    io = _GatedIO(fail=False)
    outcomes: dict[int, Any] = {}
    async with open_engine(tmp_path, CONFIG, clock=ManualClock(), io=io) as engine:
        await sql(engine, ROOT, SETUP)
        before = engine.wal.statistics()
        async with trio.open_nursery() as nursery:
            try:
                await _in_flight(engine, io, outcomes, nursery)
                assert await rows(engine, ROOT, "SELECT id, v FROM app.t") == [[100, "old"]]
                assert await rows(engine, ROOT, "SELECT v FROM app.t WHERE id = 3") == []
                assert await rows(engine, ROOT, "SELECT v FROM app.t WHERE id = 100") == [
                    ["old"]]
                with pytest.raises(AlreadyExists):
                    await sql(engine, ROOT, "INSERT INTO app.t (id, v) VALUES (3, 'dup')")
            finally:
                io.release.set()
        after = engine.wal.statistics()
        assert all(not isinstance(o, BaseException) for o in outcomes.values()), outcomes
        assert (after.records_appended - before.records_appended,
                after.syncs - before.syncs) == (7, 2)
        expected = [[2, "n2"], [3, "n3"], [4, "n4"], [5, "n5"], [100, "new"]]
        assert await rows(engine, ROOT, "SELECT id, v FROM app.t") == expected
    async with open_engine(tmp_path, CONFIG, clock=ManualClock()) as engine:
        assert await rows(engine, ROOT, "SELECT id, v FROM app.t") == expected


async def test_pipelined_commit__held_write_fails__every_queued_statement_errs_none_visible(
        tmp_path: Path) -> None:
    # The held write fails with EIO: its statement gets the I/O error, the six queued behind
    # it the poisoned log; the index and the writer's view are back to the durable state.
    io = _GatedIO(fail=True)
    outcomes: dict[int, Any] = {}
    async with open_engine(tmp_path, CONFIG, clock=ManualClock(), io=io) as engine:
        await sql(engine, ROOT, SETUP)
        async with trio.open_nursery() as nursery:
            try:
                await _in_flight(engine, io, outcomes, nursery)
            finally:
                io.release.set()
        assert all(isinstance(o, StorageUnavailable) for o in outcomes.values()), outcomes
        assert len(outcomes) == len(IN_FLIGHT) and not engine.healthy
        assert await rows(engine, ROOT, "SELECT id, v FROM app.t") == [[100, "old"]]
        (part,) = engine.store.partitions.values()
        assert not part.in_transaction and not engine._queued
        assert list(part.pk_loc) == [100]
        assert sum(t.num_rows for t in part.view(include_uncommitted=True)) == 1
        _check_index(part)
    async with open_engine(tmp_path, CONFIG, clock=ManualClock()) as engine:
        assert await rows(engine, ROOT, "SELECT id, v FROM app.t") == [[100, "old"]]


async def test_pipelined_commit__same_key_from_concurrent_tasks__exactly_one_wins(
        tmp_path: Path) -> None:
    # Eight tasks insert the same key at once (their commits overlap): one succeeds.
    async with open_engine(tmp_path, CONFIG, clock=ManualClock()) as engine:
        await sql(engine, ROOT, SETUP)
        outcomes: list[Any] = []

        async def insert(i: int) -> None:
            try:
                outcomes.append(await sql(engine, ROOT,
                                          f"INSERT INTO app.t (id, v) VALUES (7, 'by{i}')"))
            except AlreadyExists as exc:
                outcomes.append(exc)

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(insert, i)
        assert sum(not isinstance(o, AlreadyExists) for o in outcomes) == 1
        assert len(await rows(engine, ROOT, "SELECT v FROM app.t WHERE id = 7")) == 1


# ---- the partition protocol directly ---------------------------------------------------------


def _versions(part: Partition, items: list[tuple[int, str]], seq: int) -> pa.Table:
    schema = storage_schema(part.table_def)
    ids, values = zip(*items, strict=True)
    return pa.Table.from_arrays(
        [pa.array(ids, schema.field(0).type), pa.array(values, pa.string()),
         pa.array(range(seq, seq + len(items)), pa.int64()), pa.array([False] * len(items))],
        schema=schema)


def _stage(part: Partition, items: list[tuple[int, str]], seq: int) -> Any:
    part.begin()
    part.append_versions(_versions(part, items, seq), None)
    return part.seal()


def _visible(part: Partition) -> dict[int, str]:
    table = pa.concat_tables(part.view()) if part.view() else None
    return {} if table is None else dict(zip(table.column(0).to_pylist(),
                                             table.column(1).to_pylist(), strict=True))


def _check_index(part: Partition) -> None:
    """Every index entry points at a live row holding its key, and every live row is indexed."""
    live = 0
    for cid, chunk in part.chunks.items():
        keys = chunk.table.column(0).to_pylist()
        for row, key in enumerate(keys):
            if row not in chunk.dead:
                live += 1
                assert part.pk_loc[key][:2] == (cid, row)
    assert live == len(part.pk_loc)


async def _partition(tmp_path: Path, engine: Engine) -> Partition:
    await sql(engine, ROOT, "CREATE NAMESPACE app; "
              "CREATE SHARED TABLE app.t (id INT PRIMARY KEY, v TEXT)")
    table = engine.catalog.table("app", "t")
    part = engine.store.partition(table, None)
    assert part is not None
    return part


async def test_partition__staged_changes__published_in_order_each_with_its_own_view(
        tmp_path: Path) -> None:
    # Three staged transactions: readers see the durable state, then each prefix in turn.
    async with open_engine(tmp_path, CONFIG, clock=ManualClock()) as engine:
        part = await _partition(tmp_path, engine)
        first = _stage(part, [(1, "a")], 10)
        second = _stage(part, [(1, "b"), (2, "x")], 20)
        third = _stage(part, [(3, "c")], 30)
        assert _visible(part) == {} and part.in_transaction
        part.publish(first, 5)
        assert _visible(part) == {1: "a"}
        part.publish(second, 6)
        assert _visible(part) == {1: "b", 2: "x"}
        with pytest.raises(AssertionError, match="log order"):
            part.publish(first, 7)
        part.publish(third, 7)
        assert _visible(part) == {1: "b", 2: "x", 3: "c"} and not part.in_transaction
        assert part.last_lsn == 7
        _check_index(part)


async def test_partition__failure_while_a_transaction_is_open__undone_after_it_newest_first(
        tmp_path: Path) -> None:
    # A durable row, a staged update of it, and an open transaction updating it again: the
    # failure waits for the open one's rollback, then the staged one is undone too.
    async with open_engine(tmp_path, CONFIG, clock=ManualClock()) as engine:
        part = await _partition(tmp_path, engine)
        part.publish(_stage(part, [(1, "a")], 10), 5)
        _stage(part, [(1, "b"), (2, "x")], 20)
        part.begin()
        part.append_versions(_versions(part, [(1, "c")], 30), None)
        part.fail_staged()
        assert part.pk_loc[1][0] != 0 and _visible(part) == {1: "a"}  # deferred
        part.rollback()
        assert not part.in_transaction and _visible(part) == {1: "a"}
        assert list(part.pk_loc) == [1]
        _check_index(part)


async def test_partition__merges_while_staged__pinned_chunks_kept_and_undo_exact(
        tmp_path: Path) -> None:
    # A staged update pins the chunk of the row it masks; 40 one-row transactions published
    # around it merge every other chunk; failing the update then restores the row exactly.
    async with open_engine(tmp_path, CONFIG, clock=ManualClock()) as engine:
        part = await _partition(tmp_path, engine)
        part.publish(_stage(part, [(0, "a")], 1), 1)
        pinned = part.pk_loc[0][0]
        inserts = [_stage(part, [(i, f"v{i}")], 100 + i) for i in range(1, 41)]
        update = _stage(part, [(0, "changed")], 500)
        for lsn, staged in enumerate(inserts, start=2):
            part.publish(staged, lsn)
        assert len(part.chunks) < 40 and pinned in part.chunks
        assert _visible(part) == {0: "a"} | {i: f"v{i}" for i in range(1, 41)}
        assert part.pk_loc[0][0] != pinned  # the staged update is seen by writers
        part.fail_staged()
        assert part.pk_loc[0][0] == pinned and not part.in_transaction
        assert _visible(part) == {0: "a"} | {i: f"v{i}" for i in range(1, 41)}
        _check_index(part)
        assert update not in part._staged
