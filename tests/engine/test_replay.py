"""Projections are derived: flush + restart, full replay and checkpoint + tail agree."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from engine.flush import flush_partition
from engine.jobs import retain
from engine.replay_cli import compare
from tests.engine.harness import ALICE, BOB, ROOT, engine_at, rows, sql

SLUICE = Path(sys.executable).with_name("sluice")
SCHEMA = ("CREATE NAMESPACE app; "
          "CREATE SHARED TABLE app.kv (k INT PRIMARY KEY, v TEXT); "
          "CREATE USER TABLE app.notes (id INT PRIMARY KEY, body TEXT)")


async def test_flush__then_restart__rows_come_from_segments_and_tail(tmp_path: Path) -> None:
    # Flush half the writes, write more, restart: cold segments + WAL tail = everything.
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SCHEMA)
        await sql(engine, ROOT, "INSERT INTO app.kv (k, v) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        for part in list(engine.store.partitions.values()):
            assert await flush_partition(engine, part) == 3
        await sql(engine, ROOT, "UPDATE app.kv SET v = 'bb' WHERE k = 2")
        await sql(engine, ROOT, "DELETE FROM app.kv WHERE k = 3")
        assert list((tmp_path / "tables" / "app").glob("kv-*/seg-*.arrow"))
    async with engine_at(tmp_path) as engine:
        assert await rows(engine, ROOT, "SELECT k, v FROM app.kv") == [[1, "a"], [2, "bb"]]
        (part,) = engine.store.partitions.values()
        assert part.checkpoint_lsn > 0 and part.hot_rows() == 2


async def test_retention__after_flush__wal_segments_released_and_restart_intact(
        tmp_path: Path) -> None:
    # Small WAL segments roll often; after a flush and catalog checkpoint old ones go.
    from engine.config import EngineConfig
    from wal import WalConfig

    config = EngineConfig(bcrypt_cost=4, jobs_interval_seconds=3600, event_max_bytes=16384,
                          wal=WalConfig(segment_size_max_bytes=65536, record_size_max_bytes=16384))
    async with engine_at(tmp_path, config) as engine:
        await sql(engine, ROOT, SCHEMA)
        for i in range(300):
            await sql(engine, ROOT, "INSERT INTO app.kv (k, v) VALUES ($1, $2)", [i, "x" * 100])
        for part in list(engine.store.partitions.values()):
            await flush_partition(engine, part)
        assert await retain(engine) > 0
        assert engine.wal.first_lsn > 1
    async with engine_at(tmp_path, config) as engine:
        assert await rows(engine, ROOT, "SELECT count(*) FROM app.kv") == [["300"]]


async def test_replay_verify__clean_then_tampered_checkpoint(tmp_path: Path) -> None:
    # The CLI compares a copy of the live projections with a rebuild from the log.
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SCHEMA)
        await sql(engine, ROOT, "INSERT INTO app.kv (k, v) VALUES (1, 'a')")
        await sql(engine, ALICE, "INSERT INTO app.notes (id, body) VALUES (1, 'n')")
        for part in list(engine.store.partitions.values()):
            await flush_partition(engine, part)
        await sql(engine, ROOT, "UPDATE app.kv SET v = 'b' WHERE k = 1")
    done = subprocess.run([SLUICE, "replay", "--verify", tmp_path], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "identical" in done.stdout
    checkpoint = tmp_path / "checkpoints" / "catalog.json"
    data = json.loads(checkpoint.read_text())
    data["namespaces"].append({"name": "ghost", "created_at_ms": 1, "description": None})
    checkpoint.write_text(json.dumps(data))
    done = subprocess.run([SLUICE, "replay", "--verify", tmp_path], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ghost" in done.stdout


async def test_replay_into__new_dir_opens_with_the_same_rows(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "new"
    async with engine_at(source) as engine:
        await sql(engine, ROOT, SCHEMA)
        await sql(engine, BOB, "INSERT INTO app.notes (id, body) VALUES (1, 'x'), (2, 'y')")
    done = subprocess.run([SLUICE, "replay", "--data-dir", source, "--into", target],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "LSN" in done.stderr  # the progress bar
    async with engine_at(target) as engine:
        assert await rows(engine, BOB, "SELECT body FROM app.notes") == [["x"], ["y"]]
        assert engine.replay_report.rows == 0  # everything came from segments


@pytest.mark.parametrize("round_", range(3))
async def test_replay__random_workload__checkpoint_plus_tail_equals_full_replay(
        tmp_path: Path, base_seed: int, round_: int) -> None:
    # A seeded mix of writes, flushes and restarts against a dict model; after each restart
    # the rows equal the model and a full rebuild from the log equals the live state.
    seed = base_seed + round_
    rng = random.Random(seed)
    model: dict[tuple[str, int], str] = {}
    live_dir = tmp_path / "live"
    for restart in range(3):
        async with engine_at(live_dir) as engine:
            if restart == 0:
                await sql(engine, ROOT, SCHEMA)
            for _ in range(40):
                await _random_step(engine, rng, model)
            got = {("alice", r[0]): r[1] for r in await rows(
                engine, ALICE, "SELECT id, body FROM app.notes LIMIT 1000")}
            got |= {("bob", r[0]): r[1] for r in await rows(
                engine, BOB, "SELECT id, body FROM app.notes LIMIT 1000")}
            assert got == model, f"--seed {seed}"
    rebuilt_dir = tmp_path / "rebuilt"
    done = subprocess.run([SLUICE, "replay", "--data-dir", live_dir, "--into", rebuilt_dir],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    async with engine_at(live_dir) as live, engine_at(rebuilt_dir) as rebuilt:
        assert compare(live, rebuilt) == [], f"--seed {seed}"


async def _random_step(engine, rng: random.Random, model: dict) -> None:
    who = rng.choice([ALICE, BOB])
    key = rng.randrange(8)
    body = f"v{rng.randrange(1000)}"
    action = rng.random()
    if action < 0.4 and (who.user_id, key) not in model:
        await sql(engine, who, "INSERT INTO app.notes (id, body) VALUES ($1, $2)", [key, body])
        model[(who.user_id, key)] = body
    elif action < 0.6:
        await sql(engine, who, "UPDATE app.notes SET body = $1 WHERE id = $2", [body, key])
        if (who.user_id, key) in model:
            model[(who.user_id, key)] = body
    elif action < 0.8:
        await sql(engine, who, "DELETE FROM app.notes WHERE id = $1", [key])
        model.pop((who.user_id, key), None)
    elif action < 0.9:
        for part in list(engine.store.partitions.values()):
            await flush_partition(engine, part)
    else:
        await retain(engine)


async def test_stream__flush_buckets_by_time__expired_segments_dropped_whole(
        tmp_path: Path) -> None:
    # TTL 60 s -> 15 s buckets: rows 20 s apart land in different segment files; once the
    # older bucket is past the TTL the eviction flush deletes its file without a rewrite.
    from engine.clock import ManualClock

    clock = ManualClock()
    async with engine_at(tmp_path, clock=clock) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; "
                  "CREATE STREAM TABLE app.ev (n INT) WITH (TTL_SECONDS = 60)")
        await sql(engine, ALICE, "INSERT INTO app.ev (n) VALUES (1)")
        clock.advance(20_000)
        await sql(engine, ALICE, "INSERT INTO app.ev (n) VALUES (2)")
        (part,) = engine.store.partitions.values()
        assert await flush_partition(engine, part) == 2
        files = sorted(p.name for p in tmp_path.glob("streams/app/ev-*/*/seg-*.arrow"))
        assert len(files) == 2
        clock.advance(45_000)  # row 1 is 65 s old, row 2 is 45 s old
        assert await rows(engine, ALICE, "SELECT n FROM app.ev") == [[2]]
        assert await flush_partition(engine, part) == 0
        assert sorted(p.name for p in tmp_path.glob("streams/app/ev-*/*/seg-*.arrow")) == [
            files[1]]
    async with engine_at(tmp_path, clock=clock) as engine:
        assert await rows(engine, ALICE, "SELECT n FROM app.ev") == [[2]]
        await sql(engine, ALICE, "DELETE FROM app.ev WHERE n = 2")
        (part,) = engine.store.partitions.values()
        assert part.needs_rewrite
        await flush_partition(engine, part)
        assert list(tmp_path.glob("streams/app/ev-*/*/seg-*.arrow")) == []
    async with engine_at(tmp_path, clock=clock) as engine:
        assert await rows(engine, ALICE, "SELECT n FROM app.ev") == []


async def test_segment_cache__tiny_budget__cold_rows_reloaded_on_demand(tmp_path: Path) -> None:
    # Cold chunks keep only row counts and the key index; their rows live in the budgeted
    # cache. With a 1-byte budget nothing stays resident, and every read decodes again.
    from engine.config import EngineConfig

    config = EngineConfig(bcrypt_cost=4, jobs_interval_seconds=3600, segment_cache_max_bytes=1)
    async with engine_at(tmp_path, config) as engine:
        await sql(engine, ROOT, SCHEMA)
        await sql(engine, ROOT, "INSERT INTO app.kv (k, v) VALUES (1, 'a'), (2, 'b')")
        (part,) = engine.store.partitions.values()
        await flush_partition(engine, part)
        assert all(chunk.data is None for chunk in part.chunks.values())
        for _ in range(3):
            assert await rows(engine, ROOT, "SELECT v FROM app.kv WHERE k = 2") == [["b"]]
        stats = engine.segment_cache.statistics()
        assert stats.misses >= 3 and stats.resident_bytes == 0
    async with engine_at(tmp_path, config) as engine:
        assert await rows(engine, ROOT, "SELECT k FROM app.kv") == [[1], [2]]
        (part,) = engine.store.partitions.values()
        assert all(chunk.data is None for chunk in part.chunks.values())
