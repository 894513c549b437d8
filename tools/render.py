"""Turns SQL results (PROTOCOL §1.3 envelopes, §3.5 cell encodings) into text.

Four output formats, chosen with ``sluice sql --format``:

- ``table``: aligned columns for people. NULL shows as ``NULL``; numeric columns (BigInt
  strings included, Decimal strings too) are right-aligned; ``Timestamp``/``DateTime``
  microseconds show as ISO-8601 UTC (``2023-11-14T22:13:20.500Z``), ``Date`` days as
  ``2023-11-14``, ``Time`` microseconds as ``22:13:20``; ``Bytes`` as ``\\x6869``; JSON arrays
  and objects as compact JSON. Control characters are escaped so one row stays one line, and
  a cell wider than ``TABLE_CELL_WIDTH_MAX_COLUMNS`` is cut with ``…`` (the other formats
  never cut). Widths count terminal columns: East Asian wide characters take two, combining
  marks none.
- ``csv``: a header line and one line per row (RFC 4180 quoting), cells as in ``table`` but
  uncut and unescaped, NULL as an empty field. Results without rows (DDL, DML) print nothing.
- ``json``: the server's success envelope as it arrived (wire encodings kept: BigInt as a
  string, timestamps as microseconds), one indented document per request.
- ``ndjson``: one compact JSON object per row, ``{"column": wire value, ...}``. Results
  without rows print nothing.

The functions are pure: they return strings, the caller writes them.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

FORMATS = ("table", "csv", "json", "ndjson")
TABLE_CELL_WIDTH_MAX_COLUMNS = 80  # a longer cell is cut in `table` output (terminal columns)
NULL_TEXT = "NULL"
NUMERIC_TYPES = frozenset({"SmallInt", "Int", "BigInt", "Float", "Double", "Decimal"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def type_name(data_type: Any) -> str:
    """The variant name of a §3.5 ``data_type``: ``"BigInt"``, or ``"Decimal"`` for
    ``{"Decimal": {...}}``; ``"Text"`` for anything unrecognised."""
    if isinstance(data_type, str):
        return data_type
    if isinstance(data_type, dict) and len(data_type) == 1:
        return next(iter(data_type))
    return "Text"


def _fraction(micros: int) -> str:
    """No fraction for whole seconds, milliseconds (``.120``) when they are exact, else
    microseconds (``.000001``)."""
    if not micros:
        return ""
    return f".{micros // 1000:03d}" if micros % 1000 == 0 else f".{micros:06d}"


def _timestamp(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return _plain(value)
    try:
        moment = _EPOCH + timedelta(microseconds=value)
    except OverflowError:  # beyond year 9999: keep the number rather than fail the render
        return str(value)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + _fraction(moment.microsecond) + "Z"


def _date(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return _plain(value)
    try:
        return (_EPOCH + timedelta(days=value)).strftime("%Y-%m-%d")
    except OverflowError:
        return str(value)


def _time(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return _plain(value)
    seconds, micros = divmod(value, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}{_fraction(micros)}"


def _bytes(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return "\\x" + bytes(value).hex()
    return _plain(value)


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


_CELL_TEXT: dict[str, Callable[[Any], str]] = {
    "Timestamp": _timestamp, "DateTime": _timestamp, "Date": _date, "Time": _time,
    "Bytes": _bytes,
}


def cell_text(value: Any, data_type: Any) -> str | None:
    """The readable text of one wire cell of type ``data_type``; None for NULL."""
    if value is None:
        return None
    return _CELL_TEXT.get(type_name(data_type), _plain)(value)


def display_width(text: str) -> int:
    """Terminal columns ``text`` occupies (wide East Asian characters 2, combining marks 0)."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _escape(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(_ESCAPES.get(ch, f"\\x{ord(ch):02x}") if not ch.isprintable() else ch
                   for ch in text)


def _cut(text: str, limit: int) -> str:
    if display_width(text) <= limit:
        return text
    out, width = [], 0
    for ch in text:
        w = display_width(ch)
        if width + w > limit - 1:
            break
        out.append(ch)
        width += w
    return "".join(out) + "…"


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - display_width(text))
    return fill + text if right else text + fill


def render_table(result: dict[str, Any], cell_width_max: int = TABLE_CELL_WIDTH_MAX_COLUMNS
                 ) -> str:
    """One result as an aligned table with a ``(N rows)`` footer; a result without a
    schema (DDL/DML) renders as its message (or ``OK``)."""
    schema = result.get("schema") or []
    if not schema or "rows" not in result:
        return (result.get("message") or "OK") + "\n"
    names = [_cut(_escape(str(col.get("name", ""))), cell_width_max) for col in schema]
    right = [type_name(col.get("data_type")) in NUMERIC_TYPES for col in schema]
    body = [[_cut(_escape(_text_or_null(row, i, col)), cell_width_max)
             for i, col in enumerate(schema)] for row in result["rows"]]
    widths = [max([display_width(n)] + [display_width(r[i]) for r in body])
              for i, n in enumerate(names)]
    lines = [" " + " | ".join(_pad(n, w, False) for n, w in zip(names, widths, strict=True))]
    lines.append("-" + "-+-".join("-" * w for w in widths) + "-")
    for row in body:
        cells = (_pad(c, w, r) for c, w, r in zip(row, widths, right, strict=True))
        lines.append(" " + " | ".join(cells))
    count = len(body)
    lines.append(f"({count} row{'' if count == 1 else 's'})")
    return "".join(line.rstrip() + "\n" for line in lines) + "\n"


def _text_or_null(row: Sequence[Any], index: int, column: dict[str, Any]) -> str:
    value = row[index] if index < len(row) else None
    text = cell_text(value, column.get("data_type"))
    return NULL_TEXT if text is None else text


def render_csv(result: dict[str, Any]) -> str:
    """One row-returning result as CSV with a header; '' for results without rows."""
    schema = result.get("schema") or []
    if not schema or "rows" not in result:
        return ""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([col.get("name", "") for col in schema])
    for row in result["rows"]:
        writer.writerow(["" if (t := cell_text(row[i] if i < len(row) else None,
                                               col.get("data_type"))) is None else t
                         for i, col in enumerate(schema)])
    return out.getvalue()


def render_ndjson(result: dict[str, Any]) -> str:
    """One JSON object per row with wire values; '' for results without rows."""
    schema = result.get("schema") or []
    names = [col.get("name", "") for col in schema]
    return "".join(json.dumps(dict(zip(names, row, strict=False)), ensure_ascii=False) + "\n"
                   for row in result.get("rows") or [])


def render_envelope(envelope: dict[str, Any]) -> str:
    """The whole response, for ``--format json``."""
    return json.dumps(envelope, ensure_ascii=False, indent=2) + "\n"


def took_text(took_ms: Any) -> str:
    """``Time: 1.234 ms`` for a response's ``took``; '' when the server sent none."""
    if isinstance(took_ms, int | float) and not isinstance(took_ms, bool):
        return f"Time: {took_ms:.3f} ms\n"
    return ""
