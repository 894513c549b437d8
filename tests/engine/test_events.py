"""Row-change events (``engine/events.py``): the Arrow IPC blob of each change is exactly
what ``pa.ipc.new_stream`` writes (so logs written before and after the cached-schema encoder
read the same), and events round-trip through ``encode``/``decode``."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from engine.events import Op, RowChange, RowsCommitted, _ipc_bytes, decode, encode


def _writer_bytes(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


_EMBEDDING = pa.list_(pa.field("item", pa.float32(), nullable=False), 2)
_BATCHES = [
    pa.record_batch({"c1": pa.array([1, None, 3], pa.int64()), "c2": ["x", None, "zz"],
                     "_seq": pa.array([7, 8, 9], pa.int64()),
                     "_deleted": [False, False, True]}),
    pa.record_batch({"d": pa.array([Decimal("1.50"), None], pa.decimal128(10, 2)),
                     "e": pa.array([[1.0, 2.0], None], _EMBEDDING),
                     "t": pa.array([1, 2], pa.timestamp("us"))}),
    pa.record_batch({"_seq": pa.array([], pa.int64())}),  # no rows
    pa.record_batch({"a": [1, 2, 3, 4]}).slice(1, 2),  # a slice: offsets into shared buffers
    pa.record_batch({"k": pa.array(["a", "b", "a"]).dictionary_encode()}),  # writer fallback
]


@pytest.mark.parametrize("batch", _BATCHES)
def test_ipc_bytes__same_bytes_as_the_stream_writer(batch: pa.RecordBatch) -> None:
    assert _ipc_bytes(batch) == _writer_bytes(batch)
    assert _ipc_bytes(batch) == _writer_bytes(batch)  # again, from the cached schema message


def test_rows_committed__round_trip__batches_and_metadata() -> None:
    event = RowsCommitted(12, "root", tuple(
        RowChange(i, None if i else "alice", Op.INSERT, batch, (1,) if i == 1 else None)
        for i, batch in enumerate(_BATCHES[:4])))
    decoded = decode(encode(event))
    assert isinstance(decoded, RowsCommitted)
    assert (decoded.ts_ms, decoded.actor) == (12, "root")
    for before, after in zip(event.changes, decoded.changes, strict=True):
        assert after.batch.equals(before.batch)
        assert (after.table_id, after.user_id, after.op, after.assigned) == (
            before.table_id, before.user_id, before.op, before.assigned)
