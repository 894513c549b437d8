"""All table partitions, and the one place row events are applied to them.

Task safety: trio thread only (under the engine's write lock for changes); readers take
``Partition.view()`` snapshots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa

from .catalog import Catalog, TableDef
from .events import Op, RowsCommitted
from .flush import ColdPartition, attach_cold
from .partition import Partition

PartitionKey = tuple[int, str | None]  # (table_id, user_id or None for SHARED)


class TableStore:
    def __init__(self) -> None:
        self.partitions: dict[PartitionKey, Partition] = {}
        # Cold data read at start-up, attached when its partition is first used.
        self.cold: dict[PartitionKey, ColdPartition] = {}
        # (table, user) -> segment loader for that partition's directory (set by the engine).
        self.merge_chunks_max = 32  # the engine sets hot_chunks_per_partition_max
        self.loader_factory: Callable[[TableDef, str | None], Callable[[str], pa.Table]] | \
            None = None

    def partition(self, table: TableDef, user_id: str | None, *, create: bool = True
                  ) -> Partition | None:
        """The partition of ``table`` for ``user_id`` (ignored for SHARED tables)."""
        key = (table.table_id, user_id if table.is_user_scoped else None)
        part = self.partitions.get(key)
        if part is None and (create or key in self.cold):
            part = Partition(table, key[1])
            part.merge_chunks_max = self.merge_chunks_max
            if self.loader_factory is not None:
                part.segment_loader = self.loader_factory(table, key[1])
            cold = self.cold.pop(key, None)
            if cold is not None:
                attach_cold(part, cold)
            self.partitions[key] = part
        elif part is not None and part.table_def.version != table.version:
            part.retype(table)
        return part

    def partitions_of(self, table_id: int) -> Iterator[Partition]:
        return (p for (tid, _), p in list(self.partitions.items()) if tid == table_id)

    def drop_table(self, table_id: int) -> list[Partition]:
        dropped = [key for key in self.partitions if key[0] == table_id]
        return [self.partitions.pop(key) for key in dropped]

    def retype(self, table: TableDef) -> None:
        for part in self.partitions_of(table.table_id):
            part.retype(table)

    def apply_replayed(self, event: RowsCommitted, lsn: int, catalog: Catalog) -> int:
        """Applies a committed event during replay; returns the rows applied.

        Changes for tables that no longer exist (dropped later, or a different table with
        the same name) are skipped, as are partitions whose segments already hold ``lsn``.
        """
        applied = 0
        for change in event.changes:
            table = catalog.tables.get(change.table_id)
            if table is None:
                continue
            part = self.partition(table, change.user_id)
            assert part is not None
            if lsn <= part.checkpoint_lsn:
                continue
            if change.op == Op.DELETE and table.table_type == "STREAM":
                part.remove_by_seq(change.batch.column("_seq").to_pylist())
            else:
                part.append_versions(pa.Table.from_batches([change.batch]), lsn)
            applied += change.batch.num_rows
        return applied
