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


async def test_merge__big_chunks_present__small_ones_still_merged(tmp_path: Path) -> None:
    # Chunks that are not small never count: with more than merge_chunks_max big chunks in
    # the partition, later small commits are still merged (the scan skip counts new chunks).
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; "
                  "CREATE USER TABLE app.t (id INT PRIMARY KEY, v TEXT)")
        for n in range(3):
            values = ", ".join(f"({n * 5000 + i}, 'big')" for i in range(4096))
            await sql(engine, ALICE, f"INSERT INTO app.t (id, v) VALUES {values}")
        (part,) = engine.store.partitions.values()
        part.merge_chunks_max = 2
        for i in range(20):
            await sql(engine, ALICE, "INSERT INTO app.t (id, v) VALUES ($1, 's')", [i + 20000])
        small = [c for c in part.chunks.values() if c.num_rows < 4096]
        assert len(small) <= part.merge_chunks_max + 1
        assert await rows(engine, ALICE, "SELECT COUNT(*) FROM app.t") == [["12308"]]


async def test_rollback__bulk_insert_of_new_keys__keys_free_again(tmp_path: Path) -> None:
    # The all-new-keys INSERT path indexes in bulk; its undo must remove every key.
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; "
                  "CREATE USER TABLE app.t (id INT PRIMARY KEY, v TEXT)")
        await sql(engine, ALICE, "BEGIN; INSERT INTO app.t (id, v) VALUES (1, 'a'), (2, 'a'); "
                  "INSERT INTO app.t (id, v) VALUES (3, 'a'); ROLLBACK")
        (part,) = engine.store.partitions.values()
        assert part.pk_loc == {}
        await sql(engine, ALICE, "INSERT INTO app.t (id, v) VALUES (1, 'b'), (2, 'b'), (3, 'b')")
        assert await rows(engine, ALICE, "SELECT id, v FROM app.t ORDER BY id") == [
            [1, "b"], [2, "b"], [3, "b"]]
