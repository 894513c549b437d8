"""The persisted topic index file format (engine/topics/persist.py): round trip, the header
size and every rejection reason; and the WHERE compiler on literal Arrow batches."""

from __future__ import annotations

import pyarrow as pa
import pytest

from engine import InvalidSql
from engine.catalog import ColumnDef, TableDef
from engine.topics import persist
from engine.topics.index import PartitionIndex
from engine.topics.where import compile_where
from engine.types import KalamType


def partition() -> PartitionIndex:
    part = PartitionIndex(created_lsn=3, base_lsn=7, base_offset=10)
    part.extend(8, 0, [0, 2, 5], 1_767_225_600_000)
    part.extend(11, 1, [1], 1_767_225_601_000)
    return part


def test_persist__round_trip__entries_bases_and_covered_lsn() -> None:
    data = persist.encode(partition(), covered_lsn=12)
    assert len(data) == persist.HEADER_SIZE + 4 * persist.ENTRY_SIZE == 56 + 96
    assert data[:4] == b"STIX" and data[4] == 1
    loaded = persist.decode(data)
    assert isinstance(loaded, PartitionIndex)
    assert (loaded.created_lsn, loaded.base_lsn, loaded.base_offset) == (3, 7, 10)
    assert (loaded.skip_upto, loaded.persisted_lsn, loaded.high_water) == (12, 12, 14)
    assert loaded.entries([10, 11, 12, 13]) == [
        (10, 8, 0, 0, 1_767_225_600_000), (11, 8, 0, 2, 1_767_225_600_000),
        (12, 8, 0, 5, 1_767_225_600_000), (13, 11, 1, 1, 1_767_225_601_000)]


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda d: d[:40], "shorter than the header"),
    (lambda d: b"XTIX" + d[4:], "bad magic or version"),
    (lambda d: d[:4] + b"\x02" + d[5:], "bad magic or version"),
    (lambda d: d[:-1], "does not match"),
    (lambda d: d + b"\0" * 24, "does not match"),
    (lambda d: d[:60] + bytes([d[60] ^ 1]) + d[61:], "CRC mismatch"),
    (lambda d: d[:9] + bytes([d[9] ^ 1]) + d[10:], "CRC mismatch"),
])
def test_persist__damaged_file__rejected_with_its_reason(damage, reason: str) -> None:
    data = persist.encode(partition(), covered_lsn=12)
    assert reason in persist.decode(damage(data))


TABLE = TableDef(1, "app", "t", "SHARED", (
    ColumnDef(1, "id", KalamType("BigInt"), primary_key=True),
    ColumnDef(2, "name", KalamType("Text")),
    ColumnDef(3, "at", KalamType("Timestamp"))))


def batch(rows: list[tuple]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{"c1": i, "c2": n, "c3": t, "_seq": 1, "_deleted": False} for i, n, t in rows],
        schema=pa.schema([("c1", pa.int64()), ("c2", pa.string()), ("c3", pa.timestamp("us")),
                          ("_seq", pa.int64()), ("_deleted", pa.bool_())]))


@pytest.mark.parametrize(("where", "expected"), [
    ("id >= 2", [1, 2]),
    ("name ILIKE 'A%'", [0]),
    ("name NOT LIKE 'a%'", [0, 1]),  # case-sensitive; a NULL name matches neither
    ("id NOT IN (1, 3)", [1]),
    ("at > '2026-01-01T00:00:00'", [2]),
    ("-id < -2", [2]),
    ("id * 2 = 4 OR name IS NULL", [1, 2]),
    ("name IS NOT NULL AND name NOT ILIKE 'b%'", [0]),
    ("id NOT BETWEEN 2 AND 3", [0]),
    ("NOT (at IS NULL)", [0, 1, 2]),
    ("TRUE", [0, 1, 2]),
    ("NULL", []),
])
def test_where__vectorized_predicates(where: str, expected: list[int]) -> None:
    rows = batch([(1, "Apple", 0), (2, "berry", 1), (3, None, 1_767_225_600_000_001)])
    assert compile_where(where, TABLE)(rows) == expected


def test_where__column_missing_from_an_old_batch_reads_as_null() -> None:
    old = pa.RecordBatch.from_pylist([{"c1": 1, "_seq": 1, "_deleted": False}])
    assert compile_where("name IS NULL", TABLE)(old) == [0]


@pytest.mark.parametrize("where", ["t.id = 1", "nope = 1", "name = 1 +", "id = (SELECT 1)"])
def test_where__refused(where: str) -> None:
    with pytest.raises(InvalidSql):
        compile_where(where, TABLE)
