"""WAL → projections. The order of replay steps lives here and nowhere else.

1. load the catalog checkpoint (if any) and every partition's manifest (cold segments);
2. replay the WAL from the oldest LSN any projection still needs, applying catalog events
   the catalog has not seen and row events each partition has not checkpointed;
3. report the last LSN applied.

Synchronous and trio-free (runs in a worker thread at start-up, and in ``sluice replay``).
Idempotent: each projection skips events at or below its own watermark, so a replay that
overlaps a checkpoint gives the same result as a full replay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wal import iter_frames

from .catalog import Catalog
from .events import CatalogEvent, EventDecodeError, RowsCommitted, decode
from .store import TableStore

ProgressFn = Callable[[int, int], None]  # (lsn applied, rows applied so far)


@dataclass(slots=True)
class ReplayReport:
    first_lsn: int = 0
    last_lsn: int = 0
    events: int = 0
    rows: int = 0


def replay_wal(wal_dir: Path, catalog: Catalog, store: TableStore, *, from_lsn: int,
               upto_lsn: int | None = None, progress: ProgressFn | None = None,
               record_size_max_bytes: int | None = None,
               on_rows: Callable[[RowsCommitted, int], None] | None = None) -> ReplayReport:
    """Applies the log's events with LSN >= ``from_lsn`` to ``catalog`` and ``store``, and
    hands each row commit to ``on_rows`` (the topic index; it skips what it covers).

    Raises ``WalCorruptionError`` for damaged records and ``EventDecodeError`` (with the LSN)
    for a record that is not an event: the log is the truth, so nothing is skipped silently.
    """
    report = ReplayReport(first_lsn=from_lsn)
    kwargs = {} if record_size_max_bytes is None else {
        "record_size_max_bytes": record_size_max_bytes}
    for frame in iter_frames(wal_dir, from_lsn, upto_lsn=upto_lsn, **kwargs):
        try:
            event = decode(frame.payload)
        except EventDecodeError as exc:
            raise EventDecodeError(f"LSN {frame.lsn}: {exc}") from exc
        if isinstance(event, CatalogEvent):
            catalog.apply(event, frame.lsn)
        else:
            report.rows += store.apply_replayed(event, frame.lsn, catalog)
            if on_rows is not None:
                on_rows(event, frame.lsn)
        report.events += 1
        report.last_lsn = frame.lsn
        if progress is not None:
            progress(frame.lsn, report.rows)
    return report
