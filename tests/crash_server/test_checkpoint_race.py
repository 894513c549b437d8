"""Regression for a bug the server crash harness found (issue 9): ``CLUSTER SNAPSHOT`` and the
retention job wrote the catalog checkpoint from two worker threads at once through one temp
file (``catalog.json.tmp``); one thread's rename found the file gone (``FileNotFoundError``),
the job loop let it escape, and the server died with exit 1. Now the writes are serialized
and an older snapshot never replaces a newer one.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import trio

from engine import open_engine
from engine.engine import CATALOG_CHECKPOINT

WRITES_PER_THREAD = 40


async def test_catalog_checkpoint__two_threads_at_once__no_error_and_never_backwards(
        tmp_path: Path) -> None:
    async with open_engine(tmp_path / "data") as engine:
        async with engine.write_lock:
            base = engine.catalog_snapshot(int(engine.wal.committed_lsn))
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def writer(offset: int) -> None:
            start.wait()
            for n in range(WRITES_PER_THREAD):
                try:
                    lsn = base["applied_lsn"] + 2 * n + offset
                    engine.write_catalog_checkpoint(base | {"applied_lsn": lsn})
                except BaseException as exc:
                    errors.append(exc)

        async with trio.open_nursery() as nursery:
            for offset in (0, 1):
                nursery.start_soon(trio.to_thread.run_sync, writer, offset)
        assert errors == []
        newest = base["applied_lsn"] + 2 * (WRITES_PER_THREAD - 1) + 1
        path = tmp_path / "data" / "checkpoints" / CATALOG_CHECKPOINT
        assert json.loads(path.read_text())["applied_lsn"] == newest
        assert engine.checkpointed_catalog_lsn == newest
        engine.write_catalog_checkpoint(base)  # older than the file: skipped
        assert json.loads(path.read_text())["applied_lsn"] == newest
