"""Topic index persistence and WAL retention (see the package docstring).

- ``load_indexes`` (worker thread, at start before replay): every partition's file, or an
  empty partition at the topic's base; stray files of dropped topics are deleted.
- ``persist_indexes`` (trio thread; files written in a worker thread): writes each partition
  whose file is behind what has been published.
- ``retain(bound)`` (under the write lock, from the engine's retention job): lowers the WAL
  release bound so it keeps every message still inside its topic's retention; then trims,
  with one ``TOPIC_TRIMMED`` event per topic, the messages at or below the bound (they are
  past retention). The released records are then never needed again — neither by a loaded
  index file that is behind (it is rebased to the trim) nor by a rebuild from scratch (it
  skips commits at or below the trim's LSN) — so index files need no hold.

A message is inside its topic's retention while both hold:
- time: it was committed less than ``retention_seconds`` ago;
- bytes: its WAL record lies in the newest segments whose on-disk sizes add up to at most
  ``retention_max_bytes`` — counted from the active segment backwards, whole segments only
  (a topic holds the log at segment granularity, so that is what its bytes cost). The
  active segment is always kept, even when it alone is larger than the budget.
A message past retention is trimmed only once no one else holds its segment either (the
bound is shared: another topic's retention, or a table's unflushed rows, keep it
readable a while longer). A consumer or group positioned before a trim resumes at the
partition's earliest retained offset.
"""

from __future__ import annotations

import bisect
import shutil
from typing import TYPE_CHECKING

import trio

from ..events import CatalogEvent, Kind
from . import persist
from .index import PartitionIndex

if TYPE_CHECKING:
    from .service import TopicService


def load_indexes(service: TopicService) -> int:
    """Worker thread, before replay. Returns how many partitions were loaded from files."""
    engine = service.engine
    loaded = 0
    topics = engine.catalog.topics.topics
    for topic in topics.values():
        parts = []
        for number, base in enumerate(topic.bases):
            part = persist.load(engine.data_dir, engine.io, topic.topic_id, number,
                                topic.created_lsn)
            loaded += part is not None
            parts.append(part or PartitionIndex(topic.created_lsn, base.base_lsn,
                                                base.base_offset))
        service.index.parts[topic.topic_id] = parts
        service.index.partitions(topic)  # rebase to the catalog's bases
    root = persist.topics_dir(engine.data_dir)
    if root.is_dir():
        for stray in root.iterdir():
            if stray.name not in topics:
                shutil.rmtree(stray, ignore_errors=True)
    return loaded


async def persist_indexes(service: TopicService, *, force: bool = False) -> int:
    """Writes the partitions whose files are behind, at most once per
    ``topic_index_persist_interval_seconds`` unless ``force``; returns how many."""
    engine = service.engine
    now = trio.current_time()
    if not force and now < service.next_persist_at:
        return 0
    service.next_persist_at = now + engine.config.topic_index_persist_interval_seconds
    covered = service.index.published_lsn
    written = 0
    for topic_id, parts in list(service.index.parts.items()):
        for number, part in enumerate(parts):
            if part.persisted_lsn >= covered:
                continue
            data = persist.encode(part, covered)
            await trio.to_thread.run_sync(persist.save, engine.data_dir, engine.io, topic_id,
                                          number, data)
            if engine.catalog.topics.topic(topic_id) is None:  # dropped meanwhile
                await trio.to_thread.run_sync(persist.remove_topic_files, engine.data_dir,
                                              topic_id)
                break
            part.persisted_lsn = max(part.persisted_lsn, covered)
            written += 1
    return written


async def retain(service: TopicService, bound: int) -> int:
    """Caller holds the write lock. Returns the bound lowered to what topics still need,
    after trimming every message at or below it."""
    engine = service.engine
    now_ms = engine.clock.now_ms()
    topics = list(engine.catalog.topics.topics.values())
    sizes = await trio.to_thread.run_sync(engine.wal.segment_sizes)
    for topic in topics:
        keep_from_ms = now_ms - topic.retention_seconds * 1000
        keep_from_lsn = _byte_horizon(sizes, topic.retention_max_bytes)
        for part in service.index.partitions(topic):
            first_kept = max(_first_unexpired(part, keep_from_ms),
                             bisect.bisect_left(part.lsns, keep_from_lsn))
            if first_kept < len(part.lsns):
                bound = min(bound, part.lsns[first_kept] - 1)
    for topic in topics:
        trims = [_first_after(part, bound) for part in service.index.partitions(topic)]
        if any(t is not None for t in trims):
            await engine.commit_catalog(CatalogEvent(Kind.TOPIC_TRIMMED, {
                "topic_id": topic.topic_id, "offsets": trims, "upto_lsn": bound,
                "updated_at_ms": now_ms}))
            service.index.partitions(engine.catalog.topics.topics[topic.topic_id])
    return bound


def _byte_horizon(sizes: list[tuple[int, int]], max_bytes: int) -> int:
    """The first LSN inside a byte retention of ``max_bytes``: the base LSN of the oldest
    segment such that it and every newer one add up to at most ``max_bytes`` (the active,
    last segment counts as kept whatever its size). ``sizes`` is ``Wal.segment_sizes()``."""
    if not sizes:
        return 0
    horizon, total = sizes[-1]
    for base_lsn, size in reversed(sizes[:-1]):
        total += size
        if total > max_bytes:
            break
        horizon = base_lsn
    return horizon


def _first_unexpired(part: PartitionIndex, keep_from_ms: int) -> int:
    """Index of the first entry committed at or after ``keep_from_ms``. Commit times follow
    log order (each is read from the clock when the commit is queued), so a binary search
    works; a wall-clock step backwards shifts retention by at most that step."""
    return bisect.bisect_left(part.times, keep_from_ms)


def _first_after(part: PartitionIndex, bound: int) -> int | None:
    """The offset of the first message after ``bound`` if any message is at or below it."""
    if not part.lsns or part.lsns[0] > bound:
        return None
    return part.base_offset + bisect.bisect_right(part.lsns, bound)
