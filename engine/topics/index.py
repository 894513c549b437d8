"""The topic index: per topic partition, offset → position of the source row change in the
WAL. Derived state (rebuilt by replaying the log; persisted by ``persist.py``).

A ``PartitionIndex`` holds four parallel arrays — WAL LSN, change index inside that record,
row index inside that change, commit time (ms) — for offsets ``base_offset …
high_water - 1``. Offsets are gap-free. Entries are only appended (in commit order) or
dropped from the front (``rebase``: CLEAR TOPIC, retention).

``TopicIndex.publish(event, lsn, catalog)`` appends the messages of one committed event; it
is called by the commit path (in log order, on the trio thread, as each commit becomes visible) and by
replay (worker thread, before the engine serves; ``notify=False``). Publishing skips
commits a partition already covers (``skip_upto``: loaded from its file; ``base_lsn``: before
its topic's creation, CLEAR or trim), so replaying an overlapping tail is harmless.

Memory: 28 bytes per message.
"""

from __future__ import annotations

import bisect
import logging
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import pyarrow as pa
import trio

from ..catalog import Catalog, TableDef
from ..errors import InvalidSql
from ..events import RowChange, RowsCommitted
from .render import key_texts, partition_of, payloads
from .state import PartitionBase, Route, TopicDef
from .where import compile_where

log = logging.getLogger("sluice.topics")


class Run(NamedTuple):
    """Messages with consecutive offsets that come from one change of one commit."""

    offsets: range
    lsn: int
    change: int  # index of the change in the commit
    rows: list[int]  # row of each message in that change (ascending)
    ts_ms: int


@dataclass(slots=True)
class PartitionIndex:
    created_lsn: int
    base_lsn: int
    base_offset: int
    skip_upto: int = 0  # commits at or below this LSN are already in the arrays (loaded)
    lsns: array = field(default_factory=lambda: array("q"))
    changes: array = field(default_factory=lambda: array("i"))
    rows: array = field(default_factory=lambda: array("i"))
    times: array = field(default_factory=lambda: array("q"))
    persisted_lsn: int = -1  # the LSN the partition's file covers (-1: no file written)
    changed: trio.Event = field(default_factory=trio.Event)

    @property
    def high_water(self) -> int:
        """The offset the next message gets (PROTOCOL §4.2 ``Latest``)."""
        return self.base_offset + len(self.lsns)

    def extend(self, lsn: int, change: int, rows: list[int], ts_ms: int) -> None:
        """Appends ``rows`` of one change (one C-level extend per array)."""
        assert not self.lsns or lsn >= self.lsns[-1], "the index is appended in commit order"
        count = len(rows)
        self.lsns.extend(array("q", [lsn]) * count)
        self.changes.extend(array("i", [change]) * count)
        self.rows.extend(array("i", rows))
        self.times.extend(array("q", [ts_ms]) * count)

    def entries(self, offsets: list[int]) -> list[tuple[int, int, int, int, int]]:
        """(offset, lsn, change, row, ts_ms) of each offset (all within the partition)."""
        base = self.base_offset
        if offsets and offsets[-1] - offsets[0] == len(offsets) - 1:  # one run: slice
            lo, hi = offsets[0] - base, offsets[-1] - base + 1
            assert lo >= 0, (offsets[0], base)
            assert hi <= len(self.lsns), (offsets[-1], base, len(self.lsns))
            return list(zip(offsets, self.lsns[lo:hi], self.changes[lo:hi], self.rows[lo:hi],
                            self.times[lo:hi], strict=True))
        return [(o, *self.entry(o)) for o in offsets]

    def runs(self, offsets: list[int]) -> list[Run]:
        """The messages at ``offsets`` (ascending, all within the partition) as runs of
        consecutive offsets from one change each, found by bisecting the (sorted) LSNs
        rather than visiting every entry."""
        base, out, start = self.base_offset, [], 0
        for i in range(1, len(offsets) + 1):
            if i == len(offsets) or offsets[i] != offsets[i - 1] + 1:
                self._runs_between(offsets[start] - base, offsets[i - 1] - base + 1, out)
                start = i
        return out

    def _runs_between(self, lo: int, hi: int, out: list[Run]) -> None:
        assert 0 <= lo < hi <= len(self.lsns), (lo, hi, len(self.lsns))
        lsns, changes, base = self.lsns, self.changes, self.base_offset
        while lo < hi:
            lsn, change = lsns[lo], changes[lo]
            end = bisect.bisect_right(lsns, lsn, lo, hi)
            if changes[end - 1] != change:  # one commit, several changes: they are in order
                end = bisect.bisect_right(changes, change, lo, end)
            assert end > lo
            out.append(Run(range(base + lo, base + end), lsn, change,
                           self.rows[lo:end].tolist(), self.times[lo]))
            lo = end

    def rebase(self, base: PartitionBase) -> None:
        """Drops the messages below ``base.base_offset`` (CLEAR TOPIC, retention)."""
        drop = min(max(0, base.base_offset - self.base_offset), len(self.lsns))
        for values in (self.lsns, self.changes, self.rows, self.times):
            del values[:drop]
        self.base_offset = max(self.base_offset + drop, base.base_offset)
        self.base_lsn = max(self.base_lsn, base.base_lsn)

    def notify(self) -> None:
        """Wakes long-polling consumers (trio thread only)."""
        self.changed.set()
        self.changed = trio.Event()


@dataclass(frozen=True, slots=True)
class _Target:
    topic: TopicDef
    route: Route


class TopicIndex:
    """Every topic's partition indexes, plus the routing cache. Task safety: trio thread,
    or a worker thread while the engine is not yet serving (replay)."""

    def __init__(self) -> None:
        self.parts: dict[str, list[PartitionIndex]] = {}
        self.published_lsn = 0  # every commit at or below this LSN has been published
        self._routes: dict[tuple[str, str, str], list[_Target]] = {}
        self._routes_key: tuple[int, int] | None = None
        self._predicates: dict[tuple[int, str, int, int], Callable | None] = {}

    def partitions(self, topic: TopicDef) -> list[PartitionIndex]:
        """The topic's partitions, reconciled with its catalog record (created, rebased)."""
        parts = self.parts.get(topic.topic_id)
        if parts is None or parts[0].created_lsn != topic.created_lsn:
            parts = [PartitionIndex(topic.created_lsn, b.base_lsn, b.base_offset)
                     for b in topic.bases]
            self.parts[topic.topic_id] = parts
        for part, base in zip(parts, topic.bases, strict=True):
            if (part.base_lsn, part.base_offset) != (base.base_lsn, base.base_offset):
                part.rebase(base)
        return parts

    def prune(self, catalog: Catalog) -> None:
        """Forgets partitions of topics no longer in the catalog."""
        for topic_id in [t for t in self.parts if catalog.topics.topic(t) is None]:
            del self.parts[topic_id]

    def publish(self, event: RowsCommitted, lsn: int, catalog: Catalog, *,
                notify: bool = True) -> bool:
        """Appends the messages of the commit at ``lsn``; True if there were any."""
        touched: dict[int, PartitionIndex] = {}
        if catalog.topics.topics:
            routes = self._routing(catalog)
            for index, change in enumerate(event.changes):
                table = catalog.tables.get(change.table_id)
                if table is None:
                    continue
                for target in routes.get((table.namespace, table.name, str(change.op)), ()):
                    self._publish_change(target, table, change, index, event.ts_ms, lsn,
                                         touched)
        self.published_lsn = max(self.published_lsn, lsn)
        if notify:
            for part in touched.values():
                part.notify()
        return bool(touched)

    def _publish_change(self, target: _Target, table: TableDef, change: RowChange,
                        index: int, ts_ms: int, lsn: int,
                        touched: dict[int, PartitionIndex]) -> None:
        topic, route = target.topic, target.route
        if lsn <= topic.created_lsn or lsn <= route.added_lsn:
            return
        rows = self._matching(route, table, change.batch)
        if not rows:
            return
        parts = self.partitions(topic)
        if topic.partitions == 1:
            by_partition = {0: rows}
        else:
            keys = key_texts(change.batch, table)
            full = (payloads(change, rows, table, table.qualified_name, "full")
                    if table.pk is None else [None] * len(rows))
            by_partition: dict[int, list[int]] = {}
            for row, body in zip(rows, full, strict=True):
                p = partition_of(keys[row], body, topic.partitions)
                by_partition.setdefault(p, []).append(row)
        for p, chosen in by_partition.items():
            part = parts[p]
            if lsn <= part.skip_upto or lsn <= part.base_lsn:
                continue
            part.extend(lsn, index, chosen, ts_ms)
            touched[id(part)] = part

    def _matching(self, route: Route, table: TableDef, batch: pa.RecordBatch) -> list[int]:
        if route.where is None:
            return list(range(batch.num_rows))
        key = (route.added_lsn, route.where, table.table_id, table.version)
        if key not in self._predicates:
            try:
                self._predicates[key] = compile_where(route.where, table)
            except InvalidSql as exc:
                # The table changed since ADD SOURCE (a column dropped or renamed): the
                # route cannot be evaluated, so it matches nothing until fixed.
                log.warning("topic route on %s: WHERE %r cannot be evaluated: %s",
                            table.qualified_name, route.where, exc)
                self._predicates[key] = None
        predicate = self._predicates[key]
        if predicate is None:
            return []
        try:
            return predicate(batch)
        except (pa.ArrowException, InvalidSql) as exc:
            log.warning("topic route on %s: WHERE %r failed on a batch: %s",
                        table.qualified_name, route.where, exc)
            return []

    def _routing(self, catalog: Catalog) -> dict[tuple[str, str, str], list[_Target]]:
        key = (id(catalog.topics), catalog.topics.version)
        if key != self._routes_key:
            routes: dict[tuple[str, str, str], list[_Target]] = {}
            for topic in catalog.topics.topics.values():
                for route in topic.routes:
                    routes.setdefault((route.namespace, route.table, route.op), []).append(
                        _Target(topic, route))
            self._routes, self._routes_key = routes, key
        return self._routes
