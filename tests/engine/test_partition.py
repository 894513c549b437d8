"""Partition mechanics: chunk merging keeps scans cheap without changing any answer."""

from __future__ import annotations

from pathlib import Path

from tests.engine.harness import ALICE, ROOT, engine_at, rows, sql


async def test_merge__many_one_row_commits__chunk_count_bounded_answers_unchanged(
        tmp_path: Path) -> None:
    # 200 single-row commits (plus updates and deletes of merged rows) leave at most
    # merge_chunks_max + 1 chunks, and a restart (replay merges the same way) agrees.
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; "
                  "CREATE USER TABLE app.t (id INT PRIMARY KEY, v TEXT)")
        for i in range(200):
            await sql(engine, ALICE, "INSERT INTO app.t (id, v) VALUES ($1, $2)", [i, f"v{i}"])
        await sql(engine, ALICE, "UPDATE app.t SET v = 'changed' WHERE id < 10")
        await sql(engine, ALICE, "DELETE FROM app.t WHERE id >= 190")
        (part,) = engine.store.partitions.values()
        assert len(part.chunks) <= part.merge_chunks_max + 1
        expected = await rows(engine, ALICE, "SELECT id, v FROM app.t ORDER BY id LIMIT 1000")
        assert len(expected) == 190 and expected[0] == [0, "changed"] and expected[-1] == [
            189, "v189"]
    async with engine_at(tmp_path) as engine:
        (part,) = engine.store.partitions.values()
        assert len(part.chunks) <= part.merge_chunks_max + 1
        assert await rows(engine, ALICE, "SELECT id, v FROM app.t ORDER BY id LIMIT 1000") == \
            expected


async def test_rollback__after_merges__restores_every_version(tmp_path: Path) -> None:
    # A transaction over a merged partition is undone exactly, and merging waits for commit.
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; "
                  "CREATE USER TABLE app.t (id INT PRIMARY KEY, v TEXT)")
        for i in range(40):
            await sql(engine, ALICE, "INSERT INTO app.t (id, v) VALUES ($1, 'a')", [i])
        before = await rows(engine, ALICE, "SELECT id, v, _seq FROM app.t LIMIT 1000")
        statements = ["BEGIN"] + [f"UPDATE app.t SET v = 'b' WHERE id = {i}"
                                  for i in range(40)] + ["ROLLBACK"]
        await sql(engine, ALICE, "; ".join(statements))
        assert await rows(engine, ALICE, "SELECT id, v, _seq FROM app.t LIMIT 1000") == before
