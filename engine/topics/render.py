"""Message keys, partitions and payload bytes from a committed row change (PROTOCOL §4.1 and
the Sluice payload-mode decision; the rules are in the package docstring).

Pure functions over Arrow batches; any thread. Rendering uses the table definition it is
given (the current one), so column names follow renames and dropped columns disappear.
"""

from __future__ import annotations

import json
import zlib
from binascii import b2a_base64
from dataclasses import dataclass
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

import pyarrow as pa

from ..catalog import DELETED_COLUMN, SEQ_COLUMN, TableDef
from ..events import Op, RowChange
from ..types import KalamType, column_to_json

_SYSTEM_TYPES = ((SEQ_COLUMN, KalamType("BigInt")), (DELETED_COLUMN, KalamType("Boolean")))


def partition_of(key_text: str | None, full_payload: bytes | None, partitions: int) -> int:
    """``crc32(key text UTF-8) % partitions``; without a key, the crc32 of the full payload."""
    if partitions == 1:
        return 0
    data = key_text.encode() if key_text is not None else full_payload or b""
    return zlib.crc32(data) % partitions


def key_texts(batch: pa.RecordBatch, table: TableDef | None) -> list[str | None]:
    """Each row's primary-key value as text (its JSON cell; strings as they are), or None
    for every row when the table has no primary key (or the batch lacks it)."""
    pk = table.pk if table is not None else None
    index = -1 if pk is None else batch.schema.get_field_index(pk.storage_name)
    if pk is None or index < 0:
        return [None] * batch.num_rows
    cells = column_to_json(batch.column(index), pk.type)
    if pk.type.kind in _STRING_KINDS:  # already str or None
        return cells
    return [_text(cell) for cell in cells]


def _text(cell: Any) -> str | None:
    if cell is None:
        return None
    if isinstance(cell, str):
        return cell
    return json.dumps(cell, separators=(",", ":"), ensure_ascii=False)


def payloads(change: RowChange, rows: list[int], table: TableDef | None, table_name: str,
             mode: str) -> list[bytes]:
    """The payload bytes of ``rows`` of ``change`` in ``mode`` (key | full | diff): compact
    JSON objects. Each column is encoded once for all rows (``_cells``: one C-level string
    escape per text cell, no per-cell ``json.dumps``), then every row is one ``%`` format of a
    template holding the constant parts (names, ``_table``)."""
    batch = _rows_of(change.batch, rows)
    fields = _fields(change, batch, table, mode)
    columns = [column_to_json(batch.column(index), kind) for _, index, kind in fields]
    # Constant parts are escaped for '%' (a quoted name may hold one); each cell is a '%s',
    # inside quotes already for a column of digit strings without NULLs (BigInt, Decimal).
    parts = []
    for (name, _, kind), i in zip(fields, range(len(columns)), strict=True):
        bare = kind.kind in _DIGIT_KINDS and None not in columns[i]
        parts.append(_quote(name).replace("%", "%%") + (':"%s"' if bare else ":%s"))
        if not bare:
            columns[i] = _cells(columns[i], kind)
    if mode != "key":
        parts.append(f"{_quote('_table')}:{_quote(table_name)}".replace("%", "%%"))
    template = "{" + ",".join(parts) + "}"
    if not fields:
        return [(template % ()).encode()] * batch.num_rows
    return [(template % row).encode() for row in zip(*columns, strict=True)]


# Consumers render (and the record cache keeps) a change's rows in chunks of this many, so a
# huge change is never rendered whole for one small consume, and a chunk is rendered once
# for every consume that reads part of it.
RENDER_CHUNK_ROWS = 4096
# Python object overhead of one rendered row (key str, payload bytes/str, list slots), for
# the record cache's memory bound.
RENDERED_ROW_OVERHEAD_BYTES = 120
ENCODINGS = ("bytes", "base64")  # how rendered payloads are handed out


@dataclass(frozen=True, slots=True)
class Rendered:
    """Keys and payloads of some rows of one change, as consumers receive them. Immutable
    once made (shared by every consume that reads these rows)."""

    keys: list[str | None]
    payloads: list[bytes] | list[str]  # bytes, or standard base64 text (padded)
    nbytes: int  # memory held, an estimate for the cache's bound


def render_rows(change: RowChange, rows: list[int], table: TableDef | None, table_name: str,
                mode: str, encoding: str) -> Rendered:
    """``rows`` (ascending) of ``change`` rendered in ``mode``; with ``encoding="base64"``
    each payload is its standard base64 text (PROTOCOL §4.2), computed here once per row
    instead of on every reply. Pure; any thread."""
    assert encoding in ENCODINGS, encoding
    bodies: list = payloads(change, rows, table, table_name, mode)
    keys = key_texts(_rows_of(change.batch, rows), table)
    if encoding == "base64":
        bodies = [b2a_base64(body, newline=False).decode("ascii") for body in bodies]
    nbytes = sum(map(len, bodies)) + RENDERED_ROW_OVERHEAD_BYTES * len(bodies)
    return Rendered(keys, bodies, nbytes)


def _rows_of(batch: pa.RecordBatch, rows: list[int]) -> pa.RecordBatch:
    """``rows`` (ascending) of ``batch``: the batch itself, a zero-copy slice for a run of
    consecutive rows, else a ``take``."""
    if not rows:
        return batch.slice(0, 0)
    first, count = rows[0], len(rows)
    if rows[-1] - first == count - 1 and rows == list(range(first, first + count)):
        return batch if count == batch.num_rows else batch.slice(first, count)
    return batch.take(pa.array(rows, pa.int64()))


_quote = encode_basestring  # C-accelerated, keeps non-ASCII as is
_GENERIC = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# Kinds whose JSON cells are always str (or None), int, or bool.
_STRING_KINDS = ("BigInt", "Text", "Json", "File", "Decimal", "Uuid")
_INT_KINDS = ("SmallInt", "Int", "Timestamp", "DateTime", "Date", "Time")
# Kinds whose non-NULL cells are strings of digits, '-' and '.': never escaped.
_DIGIT_KINDS = ("BigInt", "Decimal")


def _cells(cells: list[Any], kind: KalamType) -> list[str]:
    """The JSON text of every cell of one column."""
    if kind.kind in _STRING_KINDS:
        return ["null" if v is None else _quote(v) for v in cells]
    if kind.kind in _INT_KINDS:
        return ["null" if v is None else str(v) for v in cells]
    if kind.kind == "Boolean":
        return ["null" if v is None else "true" if v else "false" for v in cells]
    return [_GENERIC.encode(v) for v in cells]


def _fields(change: RowChange, batch: pa.RecordBatch, table: TableDef | None, mode: str
            ) -> list[tuple[str, int, KalamType]]:
    """(output name, batch column index, type) of the columns a payload carries."""
    schema = batch.schema
    user = [] if table is None else [
        (c, schema.get_field_index(c.storage_name)) for c in table.columns]
    user = [(c, i) for c, i in user if i >= 0]
    system = [(name, schema.get_field_index(name), kind) for name, kind in _SYSTEM_TYPES
              if schema.get_field_index(name) >= 0]
    if mode == "key":
        keys = [(c.name, i, c.type) for c, i in user if c.primary_key]
        return keys or [s for s in system if s[0] == SEQ_COLUMN]
    if mode == "diff" and change.op == Op.UPDATE and change.assigned is not None:
        kept = set(change.assigned)
        user = [(c, i) for c, i in user if c.primary_key or c.id in kept]
    return [(c.name, i, c.type) for c, i in user] + system
