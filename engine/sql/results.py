"""What a statement returns: the KalamDB result shape (PROTOCOL §1.3), Arrow-backed.

Rows stay an Arrow table until someone asks for JSON; ``json_rows()`` applies the cell
encodings of §3.5 (BigInt as strings, timestamps as microseconds, …).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..types import KalamType, table_to_json_rows

SENSITIVE_COLUMNS = ("password_hash", "credentials")


@dataclass(frozen=True, slots=True)
class ResultField:
    name: str
    data_type: KalamType
    index: int
    flags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "data_type": self.data_type.wire(),
                                "index": self.index}
        if self.flags:
            body["flags"] = list(self.flags)
        return body


@dataclass(slots=True)
class StatementResult:
    """One entry of ``results``. ``rows`` is None for DDL and DML (omitted on the wire)."""

    as_user: str
    row_count: int = 0
    message: str | None = None
    schema: list[ResultField] = field(default_factory=list)
    table: pa.Table | None = None
    dml: str | None = None  # "insert" | "update" | "delete": summed in batches

    def json_rows(self) -> list[list[Any]] | None:
        if self.table is None:
            return None
        return table_to_json_rows(self.table, [f.data_type for f in self.schema])

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.schema:
            body["schema"] = [f.to_json() for f in self.schema]
        rows = self.json_rows()
        if rows is not None:
            body["rows"] = rows
        body["row_count"] = self.row_count
        if self.message is not None:
            body["message"] = self.message
        body["as_user"] = self.as_user
        return body


def message_result(as_user: str, message: str) -> StatementResult:
    return StatementResult(as_user=as_user, message=message)


def dml_result(as_user: str, op: str, count: int) -> StatementResult:
    verb = {"insert": "Inserted", "update": "Updated", "delete": "Deleted"}[op]
    return StatementResult(as_user=as_user, row_count=count, message=f"{verb} {count} row(s)",
                           dml=op)


def rows_result(as_user: str, table: pa.Table, types: list[KalamType],
                flags: list[tuple[str, ...]] | None = None, *, mask_secrets: bool = False
                ) -> StatementResult:
    """A row-returning result; ``mask_secrets`` replaces sensitive columns by ``***``."""
    if mask_secrets:
        for i, name in enumerate(table.column_names):
            if name in SENSITIVE_COLUMNS:
                masked = pa.array(["***"] * table.num_rows, pa.string())
                table = table.set_column(i, pa.field(name, pa.string()), masked)
                types[i] = KalamType("Text")
    schema = [ResultField(name, t, i, (flags[i] if flags else ()))
              for i, (name, t) in enumerate(zip(table.column_names, types, strict=True))]
    return StatementResult(as_user=as_user, row_count=table.num_rows, schema=schema,
                           table=table)


def sum_dml(results: list[StatementResult], as_user: str) -> list[StatementResult]:
    """Batch rule of PROTOCOL §1.3: DML results are not reported one by one but summed at the
    end — inserted, then updated, then deleted — for the kinds that ran."""
    kept = [r for r in results if r.dml is None]
    for op in ("insert", "update", "delete"):
        counts = [r.row_count for r in results if r.dml == op]
        if counts:
            kept.append(dml_result(as_user, op, sum(counts)))
    return kept
