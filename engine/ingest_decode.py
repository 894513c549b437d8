"""Request bodies of bulk ingestion → Arrow tables keyed by column (for engine/ingest.py).

Two formats:

- **NDJSON**: one JSON object per line (``\\n``; a ``\\r`` before it and blank lines are
  allowed; lines are numbered from 1 counting blank ones). Read by pyarrow's C++ JSON
  reader with an explicit schema derived from the table, so 10,000 rows cost milliseconds,
  not a Python loop. Values use the result encoding of PROTOCOL §3.5: integers as numbers
  *or* digit strings (BIGINT arrives as a string from JavaScript clients), timestamps as
  microseconds, dates as days, decimals as numbers or strings, bytes as arrays of byte
  numbers, JSON columns as any JSON value. Whenever the reader cannot take the body as it
  is (a type it does not convert, a malformed line, an unknown key, …) the body is decoded
  again line by line in Python: that slow path either decodes it too (e.g. a JSON column
  holding objects) or raises the precise error naming the line. The reader is never shown a
  line that does not start with ``{``: pyarrow 26 crashes the process on a body whose first
  line is ``null``.
- **Arrow IPC stream**: the schema's field names are column names; the batches are read,
  fully validated (UTF-8, offsets), and bounded in decoded size.

Both return ``Decoded``: the input columns (by ``ColumnDef``, in input order, not yet in
storage types) and a ``locate(row)`` naming a row for errors ("Line 7", "Row 7").
Errors: ``InvalidInput`` for a malformed body, an unknown, system or repeated column, or no
rows at all; ``InvalidValue`` for a bad value. Pure functions; run them in a worker thread.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json

from .catalog import DELETED_COLUMN, SEQ_COLUMN, ColumnDef, TableDef
from .errors import InvalidInput
from .ingest_cast import Locate, coerce_values, conform_column

# The JSON reader's block (its unit of parallel parsing): a line longer than this cannot be
# read by it and takes the slow path. 1 MiB measured fastest for 10,000-row bodies.
NDJSON_BLOCK_BYTES = 1024 * 1024
# A line holding anything but an object at its start (or several values) goes to the slow
# path, which reports it; see the module docstring for why the reader must not see it.
_NOT_AN_OBJECT_LINE = re.compile(rb"^[ \t\r]*[^{ \t\r\n]", re.MULTILINE)
_NON_BLANK_LINE = re.compile(rb"^[ \t\r]*[^ \t\r\n]", re.MULTILINE)
# The reader's complaint when a column holds strings where its schema says numbers.
_STRING_IN_NUMBER_COLUMN = re.compile(r"Column\(/(.*)\) changed from number to string")
_SYSTEM_COLUMNS = (SEQ_COLUMN, DELETED_COLUMN)
_NEWLINE = b"\n"


@dataclass(frozen=True, slots=True)
class Decoded:
    columns: list[tuple[ColumnDef, pa.Array]]  # input order; values not yet coerced
    num_rows: int
    locate: Locate


def _reader_type(column: ColumnDef) -> pa.DataType:
    """What the JSON reader is asked to produce for ``column`` (conform_column finishes)."""
    kind = column.type.kind
    if kind in ("SmallInt", "Int", "BigInt", "Timestamp", "DateTime", "Date", "Time"):
        return pa.int64()
    if kind in ("Float", "Double"):
        return pa.float64()
    if kind == "Bytes":
        return pa.list_(pa.int64())
    if kind == "Embedding":
        return pa.list_(pa.float64())
    if kind in ("Boolean", "Decimal"):
        return column.type.arrow_type()
    return pa.utf8()  # Text, Json, File, Uuid


def input_column(table: TableDef, name: str, where: str) -> ColumnDef:
    """The writable column an input field names (case-insensitively, as SQL does)."""
    if name.lower() in _SYSTEM_COLUMNS:
        raise InvalidInput(f"{where}: system column '{name}' cannot be written")
    column = table.column(name)
    if column is None:
        raise InvalidInput(f"{where}: unknown column '{name}': table "
                           f"'{table.qualified_name}' has no such column")
    return column


# ---- NDJSON --------------------------------------------------------------------------------


def decode_ndjson(table: TableDef, body: bytes) -> Decoded:
    if not _NON_BLANK_LINE.search(body):
        raise InvalidInput("The request body holds no rows (expected one JSON object per "
                           "line)")
    lines = body.count(_NEWLINE) + (not body.endswith(_NEWLINE))
    if body.startswith(b"{") + body.count(b"\n{") == lines:  # compact: no blank lines
        fast = _read_fast(table, body, lines, lambda row: f"Line {row + 1}")
    elif _NOT_AN_OBJECT_LINE.search(body) is None:
        lines = len(_NON_BLANK_LINE.findall(body))
        fast = _read_fast(table, body, lines, _line_locator(body))
    else:
        fast = None
    return fast if fast is not None else _read_slowly(table, body)


def _read_fast(table: TableDef, body: bytes, lines: int, locate: Locate) -> Decoded | None:
    """The C++ reader's result, or None when only the slow path can decide. A column whose
    values turn out to be strings (BIGINT as text) is re-read as strings, once."""
    types = {column.name: _reader_type(column) for column in table.columns}
    for _ in range(len(types) + 1):
        options = pa_json.ParseOptions(explicit_schema=pa.schema(list(types.items())),
                                       unexpected_field_behavior="error")
        try:
            result = pa_json.read_json(pa.BufferReader(body), parse_options=options,
                                       read_options=pa_json.ReadOptions(
                                           block_size=NDJSON_BLOCK_BYTES))
            result.validate(full=True)  # the reader passes invalid UTF-8 through
            break
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError) as exc:
            match = _STRING_IN_NUMBER_COLUMN.search(str(exc))
            name = match.group(1) if match else None
            if name not in types or types[name] == pa.utf8():
                return None
            types[name] = pa.utf8()
    else:
        return None
    if result.num_rows != lines:  # e.g. two objects on one line: the slow path says where
        return None
    columns = [(column, result.column(column.name).combine_chunks())
               for column in table.columns]
    return Decoded(columns, result.num_rows, locate)


def _line_locator(body: bytes) -> Locate:
    def locate(row: int) -> str:  # error path only: finds the row'th non-blank line
        starts = [m.start() for m in _NON_BLANK_LINE.finditer(body)]
        return f"Line {body.count(_NEWLINE, 0, starts[row]) + 1}"
    return locate


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_line(raw: bytes, number: int) -> dict[str, Any]:
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise InvalidInput(f"Line {number}: not valid UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"Line {number}: invalid JSON: {str(exc)[:120]}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"Line {number}: expected a JSON object, got "
                           f"{type(value).__name__}")
    return value


def _read_slowly(table: TableDef, body: bytes) -> Decoded:
    """Line by line in Python: the reference behaviour the fast path must agree with."""
    rows: list[dict[int, Any]] = []
    numbers: list[int] = []
    used: dict[int, ColumnDef] = {}
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        row: dict[int, Any] = {}
        for key, value in _parse_line(raw, number).items():
            column = input_column(table, key, f"Line {number}")
            if column.id in row:
                raise InvalidInput(f"Line {number}: column '{column.name}' is given more "
                                   f"than once")
            row[column.id] = value
            used.setdefault(column.id, column)
        rows.append(row)
        numbers.append(number)

    def locate(row: int) -> str:
        return f"Line {numbers[row]}"

    columns = []
    for column in table.columns:
        if column.id in used:
            values = pa.array(coerce_values(column, [row.get(column.id) for row in rows], locate),
                              type=column.type.arrow_type())
            columns.append((column, values))
    return Decoded(columns, len(rows), locate)


# ---- Arrow IPC stream ----------------------------------------------------------------------


def decode_arrow_stream(table: TableDef, body: bytes, decoded_max_bytes: int) -> Decoded:
    """The stream's batches as one table. ``decoded_max_bytes`` bounds the decoded size
    (a compressed stream can expand far beyond its body)."""
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(body))
        batches, size = [], 0
        for batch in reader:
            size += batch.nbytes
            if size > decoded_max_bytes:
                raise InvalidInput(f"The Arrow stream decodes to more than "
                                   f"{decoded_max_bytes} bytes; send fewer rows per request")
            batches.append(batch)
        data = pa.Table.from_batches(batches, schema=reader.schema)
        data.validate(full=True)
    except (pa.ArrowException, OSError, ValueError, MemoryError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput(f"Invalid Arrow IPC stream: {str(exc)[:200]}") from None
    if data.num_rows == 0:
        raise InvalidInput("The Arrow stream holds no rows")
    columns, seen = [], set()
    for name, values in zip(data.column_names, data.columns, strict=True):
        column = input_column(table, name, "Arrow schema")
        if column.id in seen:
            raise InvalidInput(f"Arrow schema: column '{column.name}' is given more than once")
        seen.add(column.id)
        columns.append((column, values))
    return Decoded(columns, data.num_rows, lambda row: f"Row {row + 1}")


def conform(table: TableDef, decoded: Decoded) -> dict[int, pa.Array]:
    """Every input column in its storage type, by column id (see engine/ingest_cast.py)."""
    return {column.id: conform_column(column, values, decoded.locate)
            for column, values in decoded.columns}
