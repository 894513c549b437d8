"""Topics across restarts and retention (issue 5): committed offsets survive, the offset
index is persisted, rebuilt from the WAL when its file is missing, damaged or behind, and
retention releases WAL segments while offsets keep their numbers.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from engine.clock import ManualClock
from engine.config import EngineConfig
from engine.flush import flush_partition
from engine.jobs import retain
from engine.topics.persist import index_path
from tests.engine.harness import CONFIG, ROOT, SERVICE, engine_at, sql
from wal import WalConfig

SETUP = [
    "CREATE NAMESPACE shop",
    "CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, msg TEXT) WITH (TYPE='SHARED')",
    "CREATE TOPIC shop.events PARTITIONS 2",
    "ALTER TOPIC shop.events ADD SOURCE shop.orders ON INSERT",
    "ALTER TOPIC shop.events ADD SOURCE shop.orders ON UPDATE WITH (payload = 'diff')",
]


async def insert(engine, first: int, count: int) -> None:
    values = ", ".join(f"({i}, 'm{i}')" for i in range(first, first + count))
    await sql(engine, ROOT, f"INSERT INTO shop.orders (id, msg) VALUES {values}")


async def snapshot(engine) -> list[tuple]:
    """Every message of both partitions (a stateless read from the earliest offset)."""
    out = []
    for partition in (0, 1):
        result = await engine.topics.consume(SERVICE, "shop.events", None, partition,
                                             "earliest", 1000)
        out += [(partition, m.offset, m.key, m.payload, m.op) for m in result.messages]
    return out


async def test_restart__committed_offsets_survive_and_the_group_resumes_after_them(
        tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        for text in SETUP:
            await sql(engine, ROOT, text)
        await insert(engine, 0, 20)
        got = await engine.topics.consume(SERVICE, "shop.events", "g", 0, "earliest", 3)
        await engine.topics.ack(SERVICE, "shop.events", "g", 0, got.messages[-1].offset)
        await engine.topics.consume(SERVICE, "shop.events", "g", 0, "earliest", 3)  # unacked
        before = await snapshot(engine)
    async with engine_at(tmp_path) as engine:
        assert await snapshot(engine) == before
        # Claims are gone; the committed offset (2) wins over `start`: resume at 3.
        resumed = await engine.topics.consume(SERVICE, "shop.events", "g", 0, "latest", 100)
        assert resumed.messages[0].offset == 3
        assert engine.catalog.topics.committed("shop.events", "g", 0) == 2


async def test_restart__index_loaded_from_its_files_not_rescanned(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        for text in SETUP:
            await sql(engine, ROOT, text)
        await insert(engine, 0, 30)
        before = await snapshot(engine)
        published = engine.topics.index.published_lsn
    assert index_path(tmp_path, "shop.events", 0).is_file()
    async with engine_at(tmp_path) as engine:
        parts = engine.topics.index.parts["shop.events"]
        assert [p.skip_upto for p in parts] == [published, published]  # from the files
        assert await snapshot(engine) == before
        await insert(engine, 30, 5)  # new messages continue the loaded numbering
        after = await snapshot(engine)
        assert len(after) == 35 and set(before) <= set(after)


async def test_restart__missing_damaged_or_stale_index_is_rebuilt_from_the_wal(
        tmp_path: Path) -> None:
    # A stale copy (older covered LSN), a flipped byte and a deleted file each lead to the
    # same messages with the same offsets as before.
    async with engine_at(tmp_path) as engine:
        for text in SETUP:
            await sql(engine, ROOT, text)
        await insert(engine, 0, 10)
        await engine.topics.persist_indexes(force=True)
        stale = tmp_path / "stale0.idx"
        shutil.copy(index_path(tmp_path, "shop.events", 0), stale)
        await insert(engine, 10, 10)
        await sql(engine, ROOT, "UPDATE shop.orders SET msg = 'u' WHERE id = 3")
        before = await snapshot(engine)
    for damage in ("stale", "flip", "delete"):
        path = index_path(tmp_path, "shop.events", 0)
        if damage == "stale":
            shutil.copy(stale, path)
        elif damage == "flip":
            data = bytearray(path.read_bytes())
            data[-3] ^= 0x40
            path.write_bytes(bytes(data))
        else:
            path.unlink()
        async with engine_at(tmp_path) as engine:
            assert await snapshot(engine) == before, damage


async def test_restart__clear_topic_then_rebuild_keeps_the_offset_numbering(
        tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        for text in SETUP:
            await sql(engine, ROOT, text)
        await insert(engine, 0, 10)
        await engine.topics.persist_indexes(force=True)
        stale = [tmp_path / f"old{p}.idx" for p in (0, 1)]
        for p in (0, 1):
            shutil.copy(index_path(tmp_path, "shop.events", p), stale[p])
        await sql(engine, ROOT, "CLEAR TOPIC shop.events")
        await insert(engine, 10, 10)
        before = await snapshot(engine)
        assert len(before) == 10 and min(offset for _, offset, *_ in before) >= 0
    for p in (0, 1):  # files from before the CLEAR: rebased on load
        shutil.copy(stale[p], index_path(tmp_path, "shop.events", p))
    async with engine_at(tmp_path) as engine:
        assert await snapshot(engine) == before
    shutil.rmtree(tmp_path / "topics")
    async with engine_at(tmp_path) as engine:
        assert await snapshot(engine) == before


async def test_retention__expired_messages_trimmed_wal_released_offsets_kept(
        tmp_path: Path) -> None:
    # Small WAL segments; messages older than the topic's 7 days are trimmed and their
    # segments released; messages inside retention hold theirs.
    config = replace(CONFIG, event_max_bytes=16384,
                     wal=WalConfig(segment_size_max_bytes=65536, record_size_max_bytes=16384))
    clock = ManualClock()
    async with engine_at(tmp_path, config, clock) as engine:
        for text in SETUP:
            await sql(engine, ROOT, text)
        for i in range(200):
            await sql(engine, ROOT, "INSERT INTO shop.orders (id, msg) VALUES ($1, $2)",
                      [i, "x" * 200])
        await _flush_all(engine)
        await engine.topics.persist_indexes(force=True)
        assert await retain(engine) == 0  # every message is inside retention: WAL kept
        for p in (0, 1):  # index files from before the trim
            shutil.copy(index_path(tmp_path, "shop.events", p), tmp_path / f"old{p}.idx")
        clock.advance(8 * 24 * 3600 * 1000)
        for i in range(200, 210):
            await sql(engine, ROOT, "INSERT INTO shop.orders (id, msg) VALUES ($1, $2)",
                      [i, "y"])
        await _flush_all(engine)
        await engine.topics.persist_indexes(force=True)
        assert await retain(engine) > 0
        kept = await snapshot(engine)
        assert sorted(int(key) for _, _, key, *_ in kept) == list(range(200, 210))
        assert min(offset for _, offset, *_ in kept) > 0  # numbering continues
        assert engine.wal.first_lsn > 1
    for p in (0, 1):  # files that are behind the trim are rebased, not replayed
        shutil.copy(tmp_path / f"old{p}.idx", index_path(tmp_path, "shop.events", p))
    async with engine_at(tmp_path, config, clock) as engine:
        assert await snapshot(engine) == kept
    shutil.rmtree(tmp_path / "topics")  # a rebuild from the remaining log agrees
    async with engine_at(tmp_path, config, clock) as engine:
        assert await snapshot(engine) == kept


async def _flush_all(engine) -> None:
    for part in list(engine.store.partitions.values()):
        await flush_partition(engine, part)


def test_config__visibility_timeout_must_be_positive() -> None:
    import pytest

    with pytest.raises(ValueError, match="topic_visibility_timeout_seconds"):
        EngineConfig(topic_visibility_timeout_seconds=0)
