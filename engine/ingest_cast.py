"""Bulk input columns → a table column's storage type (PROTOCOL §3.5), for engine/ingest.py.

``conform_column`` takes one decoded input column (any Arrow type: what an Arrow IPC body
carried, or what the NDJSON reader produced) and returns it in the column's Arrow storage
type, values checked exactly as INSERT checks them. Two paths:

- vectorised: when the input type is one whose Arrow cast means the same as
  ``coerce_value`` (integers into integer columns, digit strings into integers, floats into
  floats, strings into TEXT, integers as microseconds into timestamps, …), one ``pc.cast``
  plus vectorised checks (range, finiteness, value size);
- per value: everything else, and every input the vectorised path refuses, goes through
  ``coerce_value`` one value at a time. That path owns the error messages, so a refused
  value is always reported the way INSERT reports it, prefixed with its location ("Line 3",
  "Row 7"). It is the slow path on purpose: the fast one never decides that a value is bad.

NULLs pass through (defaults and NOT NULL are the caller's: they need the clock and ids).
Pure functions of their inputs; safe in worker threads.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from .catalog import ColumnDef
from .errors import InvalidValue
from .types import VALUE_SIZE_MAX_BYTES, KalamType, coerce_value

Locate = Callable[[int], str]  # row index (0-based) -> "Line 3" / "Row 7"

_MICROS_PER_DAY = 86_400_000_000
_INT_TEXT = r"^[+-]?[0-9]{1,19}$"  # Arrow parses exactly these as integers


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)


def _int_text(array: pa.Array) -> bool:
    return _is_text(array.type) and _all(pc.match_substring_regex(array, _INT_TEXT))


def _all(flags: pa.Array) -> bool:
    """True when no non-null flag is false."""
    return pc.all(flags, skip_nulls=True).as_py() is not False


def _integers(array: pa.Array) -> bool:
    return pa.types.is_integer(array.type) or _int_text(array)


def _via_int64(array: pa.Array, target: pa.DataType) -> pa.Array:
    return pc.cast(pc.cast(array, pa.int64()), target)


def _temporal(array: pa.Array, target: pa.DataType) -> pa.Array:
    """Integers are the wire encoding (µs, days); other temporal types are cast (a safe
    cast: a value that is not a whole number of microseconds takes the per-value path)."""
    if pa.types.is_integer(array.type):
        via = pa.int32() if pa.types.is_date32(target) else pa.int64()
        return pc.cast(pc.cast(array, via), target)
    return pc.cast(array, target)


def _max(values: pa.Array) -> int | float | None:
    return pc.max(values).as_py() if len(values) else None


def _finite(out: pa.Array) -> bool:
    values = out.flatten() if pa.types.is_fixed_size_list(out.type) else out
    return _all(pc.is_finite(values))


def _sized(out: pa.Array) -> bool:
    longest = _max(pc.binary_length(out))
    return longest is None or longest <= VALUE_SIZE_MAX_BYTES


def _time_of_day(out: pa.Array) -> bool:
    micros = out.cast(pa.int64())
    low, high = _max(pc.negate(micros)), _max(micros)
    return low is None or (low <= 0 and high < _MICROS_PER_DAY)


def _always(out: pa.Array) -> bool:
    return True


# kind -> (accepts the input array?, cast it, check the result). A kind not listed here (JSON,
# FILE) always takes the per-value path: its text must be parsed.
_Rule = tuple[Callable[[pa.Array], bool], Callable[[pa.Array, pa.DataType], pa.Array],
              Callable[[pa.Array], bool]]
_INT_RULE: _Rule = (_integers, _via_int64, _always)
_NUMBER_RULE: _Rule = (lambda a: pa.types.is_integer(a.type) or pa.types.is_floating(a.type),
                       pc.cast, _finite)
_TIMESTAMP_RULE: _Rule = (lambda a: pa.types.is_integer(a.type) or pa.types.is_timestamp(a.type),
                          _temporal, _always)
_RULES: dict[str, _Rule] = {
    "Boolean": (lambda a: pa.types.is_boolean(a.type), pc.cast, _always),
    "SmallInt": _INT_RULE, "Int": _INT_RULE, "BigInt": _INT_RULE,
    "Float": _NUMBER_RULE, "Double": _NUMBER_RULE,
    "Decimal": (lambda a: pa.types.is_decimal(a.type), pc.cast, _always),
    "Text": (lambda a: _is_text(a.type), pc.cast, _sized),
    "Bytes": (lambda a: _is_binary(a.type), pc.cast, _sized),
    "Timestamp": _TIMESTAMP_RULE, "DateTime": _TIMESTAMP_RULE,
    "Date": (lambda a: pa.types.is_integer(a.type) or pa.types.is_date32(a.type), _temporal,
             _always),
    "Time": (lambda a: pa.types.is_integer(a.type) or pa.types.is_time(a.type), _temporal,
             _time_of_day),
    "Uuid": (lambda a: a.type == pa.binary(16), pc.cast, _always),
    "Embedding": (lambda a: pa.types.is_list(a.type) or pa.types.is_fixed_size_list(a.type)
                  or pa.types.is_large_list(a.type), pc.cast, _finite),
}


def conform_column(column: ColumnDef, array: pa.Array | pa.ChunkedArray, locate: Locate
                   ) -> pa.Array:
    """``array`` as ``column``'s storage type. Raises ``InvalidValue`` naming the first bad
    value's location, the column and the reason (INSERT's wording)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    target = column.type.arrow_type()
    if array.null_count == len(array):
        return pa.nulls(len(array), target)
    fast = _vectorised(column.type, array, target)
    if fast is not None:
        return fast
    return _per_value(column, array, target, locate)


def _vectorised(t: KalamType, array: pa.Array, target: pa.DataType) -> pa.Array | None:
    rule = _RULES.get(t.kind)
    if rule is None:
        return None
    accepts, cast, valid = rule
    if not accepts(array):
        return None
    try:
        out = array if array.type == target else cast(array, target)
        return out if valid(out) else None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError):
        return None


def _per_value(column: ColumnDef, array: pa.Array, target: pa.DataType, locate: Locate
               ) -> pa.Array:
    try:
        values = array.to_pylist()
    except (pa.ArrowException, ValueError, OverflowError) as exc:
        raise InvalidValue(f"Column '{column.name}' ({column.type.sql()}): values of Arrow "
                           f"type {array.type} cannot be converted: {exc}") from None
    return pa.array(coerce_values(column, values, locate), type=target)


def coerce_values(column: ColumnDef, values: list, locate: Locate) -> list:
    """``coerce_value`` of each value; the first refusal is re-raised with its location."""
    out = []
    for row, value in enumerate(values):
        try:
            out.append(coerce_value(value, column.type, column.name))
        except InvalidValue as exc:
            raise InvalidValue(f"{locate(row)}: {exc}") from None
    return out
