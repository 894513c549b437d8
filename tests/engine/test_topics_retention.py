"""Topic retention by bytes (issue 5, engine/topics/retention.py): a topic holds only the
newest WAL segments that fit its ``retention_max_bytes`` (set at CREATE TOPIC from the
config default ``topic_retention_max_bytes_default``); older messages are trimmed with a
``TOPIC_TRIMMED`` event, their segments released, the offsets keep their numbers across
restarts, and a group positioned before the trim resumes at the earliest retained offset.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from engine.clock import ManualClock
from engine.flush import flush_partition
from engine.jobs import retain
from engine.topics.retention import _byte_horizon
from tests.engine.harness import CONFIG, ROOT, SERVICE, engine_at, rows, sql
from wal import WalConfig

SEGMENT_BYTES = 65536
RETENTION_BYTES = 2 * SEGMENT_BYTES  # the active segment and the one before it


def test_byte_horizon__newest_segments_that_fit__active_always_kept() -> None:
    sizes = [(1, 100), (50, 100), (90, 100), (120, 100)]
    assert _byte_horizon(sizes, 400) == 1
    assert _byte_horizon(sizes, 399) == 50
    assert _byte_horizon(sizes, 200) == 90
    assert _byte_horizon(sizes, 199) == 120
    assert _byte_horizon(sizes, 1) == 120  # the active segment alone exceeds the budget
    assert _byte_horizon([], 1) == 0


async def consume_all(engine, group: str | None = None) -> list[tuple[int, str]]:
    result = await engine.topics.consume(SERVICE, "shop.events", group, 0, "earliest", 10_000)
    return [(m.offset, m.key) for m in result.messages]


async def test_retention_bytes__oldest_trimmed_segments_released_offsets_kept(
        tmp_path: Path) -> None:
    # Small segments, a 2-segment byte budget and a 7-day time retention that never
    # expires: only the bytes rule can trim. A group that acked offset 9 resumes at the
    # earliest retained offset; a restart (and a rebuild from the log) numbers alike.
    config = replace(CONFIG, event_max_bytes=16384, topic_retention_max_bytes_default=
                     RETENTION_BYTES, wal=WalConfig(segment_size_max_bytes=SEGMENT_BYTES,
                                                    record_size_max_bytes=16384))
    clock = ManualClock()
    async with engine_at(tmp_path, config, clock) as engine:
        for text in ["CREATE NAMESPACE shop",
                     "CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, msg TEXT) "
                     "WITH (TYPE='SHARED')",
                     "CREATE TOPIC shop.events",
                     "ALTER TOPIC shop.events ADD SOURCE shop.orders ON INSERT"]:
            await sql(engine, ROOT, text)
        [[retained]] = await rows(engine, ROOT, "SELECT retention_max_bytes FROM "
                                                "system.topics")
        assert int(retained) == RETENTION_BYTES
        for i in range(600):
            await sql(engine, ROOT, "INSERT INTO shop.orders (id, msg) VALUES ($1, $2)",
                      [i, "x" * 200])
        await engine.topics.ack(SERVICE, "shop.events", "g", 0, 9)
        assert len(engine.wal.segment_sizes()) > 4
        for part in list(engine.store.partitions.values()):
            await flush_partition(engine, part)
        await engine.topics.persist_indexes(force=True)
        assert await retain(engine) > 0
        # The two newest segments are kept (+1 if the TOPIC_TRIMMED event itself rolled).
        assert len(engine.wal.segment_sizes()) <= RETENTION_BYTES // SEGMENT_BYTES + 1
        kept = await consume_all(engine)
        first = kept[0][0]
        assert first > 10
        assert kept == [(offset, str(offset)) for offset in range(first, 600)]
        assert (await consume_all(engine, "g"))[0][0] == first  # acked 9: resumes at first
    async with engine_at(tmp_path, config, clock) as engine:
        assert await consume_all(engine) == kept
    shutil.rmtree(tmp_path / "topics")  # a rebuild from the remaining log agrees
    async with engine_at(tmp_path, config, clock) as engine:
        assert await consume_all(engine) == kept
