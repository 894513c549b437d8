"""Live-query messages as JSON-able dicts (PROTOCOL §6.4), from Arrow rows.

Rows are objects keyed by column name in select-list order, cells in the §3.5 encodings
(``types.column_to_json``: BIGINT and ``_seq`` as strings, timestamps as microseconds …),
``_seq`` always present, ``_deleted`` only for ``SELECT *`` (and on delete tombstones).

``change`` payloads:
- insert: ``rows`` = the full projected new rows;
- update: ``rows`` = ``_seq``, the primary key, and each projected non-system column whose
  new value is non-null; ``old_values`` = the previous ``_seq``, the primary key, and the old
  value of each projected column that changed;
- delete (USER/SHARED, soft): ``old_values`` = the tombstone rows with ``_deleted: true``;
- delete on a STREAM table (hard): ``old_values`` = ``{"row_id": "<user_id>:<seq>"}``.

Initial pages are rendered straight to JSON text (``initial_batch_text``), column by column
with Arrow kernels (``rows_json``): each cell becomes its JSON text, then each row one string
— no Python dict per row and no ``json.dumps`` walk over them. Kinds without an exact Arrow
rendering (floats, temporals, bytes, …) and strings that need JSON escaping take the slow
path (``column_to_json`` + ``json.dumps`` per cell), so the text always equals
``json.dumps(row_objects(...))`` (tests/engine/test_live.py checks it).

Runs in the connection's writer task (trio thread), never in the commit path. Raises
``InvalidValue`` for a cell JSON cannot carry (NaN, …): the caller drops the subscription
with ``CONVERSION_ERROR``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..catalog import DELETED_COLUMN, SEQ_COLUMN, ColumnDef
from ..events import Op
from ..types import KalamType, column_to_json
from .query import LiveQuery
from .subscription import Change, Page, Subscription

_SEQ_TYPE = KalamType("BigInt")
_BOOL_TYPE = KalamType("Boolean")


def schema(query: LiveQuery) -> list[dict[str, Any]]:
    """``subscription_ack.schema``: projected columns (all, system ones too, for ``*``)."""
    fields = []
    for index, column in enumerate(query.columns):
        entry: dict[str, Any] = {"name": column.name, "data_type": column.type.wire(),
                                 "index": index}
        flags = ["pk", "nn", "uq"] if column.primary_key else ([] if column.nullable
                                                                else ["nn"])
        if flags:
            entry["flags"] = flags
        fields.append(entry)
    extra = [(SEQ_COLUMN, _SEQ_TYPE)] + ([(DELETED_COLUMN, _BOOL_TYPE)] if query.star else [])
    for name, kind in extra:
        fields.append({"name": name, "data_type": kind.wire(), "index": len(fields)})
    return fields


def _cells(table: pa.Table, columns: list[tuple[str, str, KalamType]]) -> list[list[Any]]:
    return [column_to_json(table.column(storage), kind) for _, storage, kind in columns]


def row_objects(table: pa.Table, query: LiveQuery, *, deleted: bool = False
                ) -> list[dict[str, Any]]:
    """``table`` (aligned storage names) as row objects of the query's projection."""
    columns = [(c.name, c.storage_name, c.type) for c in query.columns]
    columns.append((SEQ_COLUMN, SEQ_COLUMN, _SEQ_TYPE))
    if query.star or deleted:
        columns.append((DELETED_COLUMN, DELETED_COLUMN, _BOOL_TYPE))
    cells = _cells(table, columns)
    names = [name for name, _, _ in columns]
    return [dict(zip(names, values, strict=True)) for values in zip(*cells, strict=True)]


# Bytes whose characters json.dumps(ensure_ascii=False) escapes inside a string. UTF-8
# continuation and lead bytes are all >= 0x80, so a match is never a false positive.
_NEEDS_ESCAPE = re.compile(rb'[\x00-\x1f"\\]')
_INTEGER_KINDS = ("SmallInt", "Int", "BigInt")


def _needs_escape(array: pa.ChunkedArray) -> bool:
    """Does any string of ``array`` (string or large_string) need JSON escaping? Scans
    the UTF-8 bytes of each chunk's own range with one regular-expression search."""
    width = "q" if pa.types.is_large_string(array.type) else "i"
    for chunk in array.chunks:
        _, offsets, data = chunk.buffers()
        if data is None or offsets is None or not len(chunk):
            continue
        bounds = memoryview(offsets).cast(width)
        window = memoryview(data)[bounds[chunk.offset]:bounds[chunk.offset + len(chunk)]]
        if _NEEDS_ESCAPE.search(window):
            return True
    return False


def _cell_texts(array: pa.ChunkedArray, kind: KalamType) -> tuple[Any, bool]:
    """(texts, quote): the JSON text of every cell of ``array`` as a string array; with
    ``quote`` each text still lacks its double quotes (the caller folds them into the
    surrounding literals) — only returned for arrays without NULLs."""
    arrow = array.type
    texts: Any = None
    quote = False
    if kind.kind in _INTEGER_KINDS and pa.types.is_integer(arrow):
        texts, quote = pc.cast(array, pa.utf8()), kind.kind == "BigInt"  # §3.5: a string
    elif kind.kind == "Boolean" and pa.types.is_boolean(arrow):
        texts = pc.if_else(array, "true", "false")
    elif kind.kind in ("Text", "Json", "File") and (
            pa.types.is_string(arrow) or pa.types.is_large_string(arrow)) and \
            not _needs_escape(array):
        texts, quote = array, True  # nothing to escape (ensure_ascii=False keeps the rest)
    if texts is None:  # the general path: exactly what json.dumps makes of the §3.5 cells
        return pa.array([_dumps(v) for v in column_to_json(array, kind)], pa.utf8()), False
    if quote and texts.null_count:
        texts, quote = pc.binary_join_element_wise('"', texts, '"', ""), False
    return (pc.fill_null(texts, "null") if texts.null_count else texts), quote


def rows_json(table: pa.Table, query: LiveQuery, *, deleted: bool = False) -> str:
    """``json.dumps(row_objects(table, query, deleted=deleted))``, compact, built with
    vectorized kernels (see the module docstring): one string per row from the cells'
    texts and the literals between them, then one join."""
    if not table.num_rows:
        return "[]"
    columns = [(c.name, c.storage_name, c.type) for c in query.columns]
    columns.append((SEQ_COLUMN, SEQ_COLUMN, _SEQ_TYPE))
    if query.star or deleted:
        columns.append((DELETED_COLUMN, DELETED_COLUMN, _BOOL_TYPE))
    parts: list[Any] = []
    literal = ""
    for index, (name, storage, kind) in enumerate(columns):
        texts, quote = _cell_texts(table.column(storage), kind)
        literal += ("{" if index == 0 else ",") + _dumps(name) + ":" + ('"' if quote else "")
        parts += [literal, texts]
        literal = '"' if quote else ""
    rows = pc.binary_join_element_wise(*parts, literal + "}", "")
    if isinstance(rows, pa.ChunkedArray):
        rows = rows.combine_chunks()
    whole = pa.ListArray.from_arrays(pa.array([0, len(rows)], pa.int32()), rows)
    return "[" + pc.binary_join(whole, ",")[0].as_py() + "]"


def initial_batch_text(sub: Subscription, page: Page) -> str:
    """``initial_batch(sub, page)`` as compact JSON text (same keys, same order)."""
    return (f'{{"type":"initial_data_batch","subscription_id":{_dumps(sub.subscription_id)},'
            f'"rows":{rows_json(page.rows, sub.query)},'
            f'"batch_control":{_dumps(page.batch_control())}}}')


def ack(sub: Subscription, page: Page | None) -> dict[str, Any]:
    control = page.batch_control() if page is not None else {
        "batch_num": 0, "has_more": False, "status": "ready", "last_seq_id": None}
    return {"type": "subscription_ack", "subscription_id": sub.subscription_id,
            "total_rows": 0, "batch_control": control, "schema": schema(sub.query)}


def initial_batch(sub: Subscription, page: Page) -> dict[str, Any]:
    return {"type": "initial_data_batch", "subscription_id": sub.subscription_id,
            "rows": row_objects(page.rows, sub.query), "batch_control": page.batch_control()}


def change(item: Change) -> dict[str, Any]:
    sub, query = item.sub, item.sub.query
    body: dict[str, Any] = {"type": "change", "subscription_id": sub.subscription_id,
                            "change_type": str(item.op)}
    if item.op == Op.INSERT:
        body["rows"] = row_objects(item.new, query)
    elif item.op == Op.UPDATE:
        body["rows"], body["old_values"] = _update_values(item, query)
    elif query.table.table_type == "STREAM":
        seqs = item.new.column(SEQ_COLUMN).to_pylist()
        body["old_values"] = [{"row_id": f"{item.user_id}:{seq}"} for seq in seqs]
    else:
        body["old_values"] = row_objects(item.new, query, deleted=True)
    return body


def change_text(item: Change) -> str:
    """``change(item)`` as compact JSON text; the part after ``subscription_id`` is
    rendered once per ``item.shared`` (all subscriptions of one SQL and user in a commit)."""
    shared = item.shared if item.shared is not None else {}
    tail = shared.get("tail")
    if tail is None:
        body = change(item)
        del body["type"], body["subscription_id"]
        tail = shared["tail"] = _dumps(body)[1:]  # without the opening brace
    return f'{{"type":"change","subscription_id":{_dumps(item.sub.subscription_id)},{tail}'


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _update_values(item: Change, query: LiveQuery
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    pk = query.table.pk
    shown: list[ColumnDef] = list(query.columns)
    key_cols = [pk] if pk is not None and pk not in shown else []
    everything = [(c.name, c.storage_name, c.type) for c in (*key_cols, *shown)]
    everything.append((SEQ_COLUMN, SEQ_COLUMN, _SEQ_TYPE))
    new_cells = list(zip(*_cells(item.new, everything), strict=True))
    previous: dict[Any, tuple[Any, ...]] = {}
    if item.old is not None and pk is not None:
        old_cells = list(zip(*_cells(item.old, everything), strict=True))
        key_at = [name for name, _, _ in everything].index(pk.name)
        for cells in old_cells:  # ascending _seq: the newest earlier version wins
            previous.setdefault(_freeze(cells[key_at]), [])
            previous[_freeze(cells[key_at])].append(cells)
    rows, olds = [], []
    for cells in new_cells:
        new = dict(zip([n for n, _, _ in everything], cells, strict=True))
        key = pk.name if pk is not None else None
        row = {} if key is None else {key: new[key]}
        row[SEQ_COLUMN] = new[SEQ_COLUMN]
        row.update((c.name, new[c.name]) for c in shown
                   if new[c.name] is not None and c.name != key)
        rows.append(row)
        olds.append(_old_values(new, previous, everything, shown, key))
    return rows, olds


def _old_values(new: dict[str, Any], previous: dict[Any, list[tuple[Any, ...]]],
                everything: list[tuple[str, str, KalamType]], shown: list[ColumnDef],
                key: str | None) -> dict[str, Any]:
    if key is None:
        return {}
    out: dict[str, Any] = {key: new[key]}
    names = [n for n, _, _ in everything]
    new_seq = int(new[SEQ_COLUMN])
    candidates = [dict(zip(names, cells, strict=True))
                  for cells in previous.get(_freeze(new[key]), [])]
    candidates = [c for c in candidates if int(c[SEQ_COLUMN]) < new_seq]
    if not candidates:
        return out
    old = candidates[-1]
    out[SEQ_COLUMN] = old[SEQ_COLUMN]
    out.update((c.name, old[c.name]) for c in shown
               if c.name != key and old[c.name] != new[c.name])
    return out


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
