"""The event vocabulary written to the WAL and its versioned codec — the only code that knows
WAL payload bytes.

Payload layout, version 1 (integers little-endian)
--------------------------------------------------
    offset  size  field
    0       1     codec version (1)
    1       1     event kind (``Kind``)
    2       4     u32 M: length of the metadata
    6       M     metadata: UTF-8 JSON object (compact, sorted keys)
    6+M     ...   row events only: the Arrow IPC *stream* bytes of each change, back to back;
                  ``meta["changes"][i]["bytes"]`` gives each one's length

Catalog events (namespaces, tables, views, users, storages, topics and consumer-group
offsets) carry everything in the metadata.
``ROWS_COMMITTED`` is one committed transaction: every row change of every statement in it,
so a transaction is one WAL record — all of it survives a crash or none of it does.

Row batches name their columns by **column id** (``"c<id>"``) plus the system columns
``_seq`` and ``_deleted``; ids never change when a column is renamed, so old events replay
correctly after ALTER TABLE (missing columns become NULL, dropped ones are ignored).

Compatibility: a decoder accepts every codec version it knows; a new event kind or field is
a new version only when an old decoder would misread it.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass, field

import pyarrow as pa

CODEC_VERSION = 1
_PREFIX = struct.Struct("<BBI")


class Kind(enum.IntEnum):
    NAMESPACE_CREATED = 1
    NAMESPACE_ALTERED = 2
    NAMESPACE_DROPPED = 3
    TABLE_CREATED = 10
    TABLE_ALTERED = 11
    TABLE_DROPPED = 12
    VIEW_CREATED = 14  # also CREATE OR REPLACE of an existing view
    VIEW_DROPPED = 15
    USER_CREATED = 20
    USER_ALTERED = 21
    USER_DROPPED = 22
    STORAGE_CREATED = 30
    STORAGE_ALTERED = 31
    STORAGE_DROPPED = 32
    ROWS_COMMITTED = 40
    # Topics (engine/topics/): definitions, routes, consumer-group offsets, trims.
    TOPIC_CREATED = 50
    TOPIC_SOURCE_ADDED = 51
    TOPIC_DROPPED = 52
    TOPIC_CLEARED = 53  # CLEAR TOPIC: every partition's messages so far are released
    TOPIC_OFFSET_ACKED = 54  # a consumer group's committed offset (inclusive, monotonic)
    TOPIC_TRIMMED = 55  # retention released a partition's oldest messages


class Op(enum.StrEnum):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"  # USER/SHARED: tombstone versions; STREAM: rows removed by _seq


class EventDecodeError(ValueError):
    """A payload that is not a valid event of a known codec version."""


@dataclass(frozen=True, slots=True)
class CatalogEvent:
    kind: Kind
    body: dict  # JSON-able; its shape is owned by engine/catalog.py

    def __post_init__(self) -> None:
        assert self.kind != Kind.ROWS_COMMITTED


@dataclass(frozen=True, slots=True)
class RowChange:
    """Row versions of one table partition written by one commit.

    ``batch`` holds whole new versions (insert/update/delete-tombstone) for USER/SHARED
    tables, or for a STREAM delete just the ``_seq`` column of the rows removed. (Expired
    STREAM rows need no event: they are invisible by their ``_seq`` time on every read.)
    """

    table_id: int
    user_id: str | None  # partition owner for USER/STREAM tables; None for SHARED
    op: Op
    batch: pa.RecordBatch
    # UPDATE only: ids of the columns the statement assigned (topics' ``diff`` payloads);
    # None when unknown (other ops, events written before this field existed).
    assigned: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class RowsCommitted:
    ts_ms: int
    actor: str  # the effective user that committed
    changes: tuple[RowChange, ...] = field(default_factory=tuple)

    @property
    def row_count(self) -> int:
        return sum(change.batch.num_rows for change in self.changes)


Event = CatalogEvent | RowsCommitted


def encode(event: Event) -> bytes:
    if isinstance(event, CatalogEvent):
        return _frame(event.kind, event.body, b"")
    blobs = [_ipc_bytes(change.batch) for change in event.changes]
    meta = {
        "ts_ms": event.ts_ms,
        "actor": event.actor,
        "changes": [_change_meta(c, blob) for c, blob in zip(event.changes, blobs, strict=True)],
    }
    return _frame(Kind.ROWS_COMMITTED, meta, b"".join(blobs))


def _change_meta(change: RowChange, blob: bytes) -> dict:
    meta = {"table_id": change.table_id, "user_id": change.user_id, "op": str(change.op),
            "rows": change.batch.num_rows, "bytes": len(blob)}
    if change.assigned is not None:  # optional key: older decoders ignore it
        meta["assigned"] = list(change.assigned)
    return meta


def decode(payload: bytes) -> Event:
    """Raises ``EventDecodeError`` for anything that is not a valid event."""
    kind, meta, rest = _unframe(payload)
    if kind != Kind.ROWS_COMMITTED:
        return CatalogEvent(kind, meta)
    try:
        changes, offset = [], 0
        for item in meta["changes"]:
            size = int(item["bytes"])
            if size < 0 or offset + size > len(rest):
                raise EventDecodeError("row change extends past the payload")
            batch = _read_ipc(rest[offset : offset + size])
            if batch.num_rows != int(item["rows"]):
                raise EventDecodeError("row count does not match the metadata")
            assigned = item.get("assigned")
            changes.append(RowChange(int(item["table_id"]), item["user_id"], Op(item["op"]),
                                     batch, None if assigned is None
                                     else tuple(int(i) for i in assigned)))
            offset += size
        if offset != len(rest):
            raise EventDecodeError("trailing bytes after the last row change")
        return RowsCommitted(int(meta["ts_ms"]), str(meta["actor"]), tuple(changes))
    except (KeyError, TypeError, ValueError, pa.ArrowException) as exc:
        if isinstance(exc, EventDecodeError):
            raise
        raise EventDecodeError(f"bad ROWS_COMMITTED event: {exc}") from exc


def describe(payload: bytes) -> str:
    """One human line for ``sluice wal dump``/``inspect``; never raises."""
    try:
        event = decode(payload)
    except EventDecodeError as exc:
        return f"undecodable event ({exc})"
    if isinstance(event, CatalogEvent):
        name = (event.body.get("topic_id") or event.body.get("name")
                or event.body.get("user_id") or event.body.get("id", ""))
        return f"{event.kind.name} {name}".rstrip()
    parts = [f"{c.op} {c.batch.num_rows} row(s) table_id={c.table_id}"
             + (f" user={c.user_id}" if c.user_id else "") for c in event.changes]
    return f"ROWS_COMMITTED by {event.actor}: " + "; ".join(parts)


def event_kind_name(payload: bytes) -> str:
    """The event kind's name from the first bytes alone (cheap; for frame tables)."""
    if len(payload) < _PREFIX.size or payload[0] != CODEC_VERSION:
        return "?"
    try:
        return Kind(payload[1]).name
    except ValueError:
        return "?"


def _frame(kind: Kind, meta: dict, tail: bytes) -> bytes:
    body = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
    return _PREFIX.pack(CODEC_VERSION, kind, len(body)) + body + tail


def _unframe(payload: bytes) -> tuple[Kind, dict, memoryview]:
    if len(payload) < _PREFIX.size:
        raise EventDecodeError("payload shorter than the event prefix")
    version, kind_code, meta_len = _PREFIX.unpack_from(payload, 0)
    if version != CODEC_VERSION:
        raise EventDecodeError(f"unknown event codec version {version}")
    try:
        kind = Kind(kind_code)
    except ValueError as exc:
        raise EventDecodeError(f"unknown event kind {kind_code}") from exc
    end = _PREFIX.size + meta_len
    if end > len(payload):
        raise EventDecodeError("metadata extends past the payload")
    try:
        meta = json.loads(payload[_PREFIX.size : end])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventDecodeError(f"metadata is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise EventDecodeError("metadata is not a JSON object")
    return kind, meta, memoryview(payload)[end:]


_SCHEMA_MESSAGES_MAX = 256  # distinct batch schemas whose IPC schema message is kept
_schema_messages: dict[pa.Schema, bytes] = {}
_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # continuation marker, length 0


def _ipc_bytes(batch: pa.RecordBatch) -> bytes:
    """``batch`` as an Arrow IPC stream: schema message, record batch message, end marker;
    byte for byte what ``pa.ipc.new_stream`` writes, without setting up a writer per event
    (the schema message is serialised once per schema). Dictionary-typed columns, whose
    stream also carries dictionary batches, go through the writer."""
    schema = batch.schema
    head = _schema_messages.get(schema)
    if head is None:
        if any(pa.types.is_dictionary(f.type) for f in schema):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, schema) as writer:
                writer.write_batch(batch)
            return sink.getvalue().to_pybytes()
        if len(_schema_messages) >= _SCHEMA_MESSAGES_MAX:
            _schema_messages.clear()
        head = _schema_messages[schema] = schema.serialize().to_pybytes()
    return b"".join((head, batch.serialize().to_pybytes(), _END_OF_STREAM))


def _read_ipc(data: memoryview) -> pa.RecordBatch:
    reader = pa.ipc.open_stream(pa.py_buffer(data))
    batches = list(reader)
    if len(batches) != 1:
        raise EventDecodeError(f"a row change must hold exactly one batch, not {len(batches)}")
    return batches[0]
