"""Column types: KalamDB's type system (PROTOCOL.md §3.5) and its three faces.

- SQL: ``parse_type`` reads every spelling CREATE/ALTER TABLE accepts; ``KalamType.sql`` is
  the canonical spelling DESCRIBE shows (the reference's ``sql_name``, e.g. ``DECIMAL(10, 2)``).
- Arrow: ``KalamType.arrow_type`` is the storage column type; ``type_from_arrow`` maps a
  computed result column back (unmapped types fall back to ``Text``, as the reference does).
- JSON: ``KalamType.wire`` is the externally tagged ``data_type`` of result schemas
  (``"BigInt"``, ``{"Decimal":{"precision":p,"scale":s}}``, ``{"Embedding":n}``), also used by
  ``to_json``/``from_json`` for catalog events. ``column_to_json`` encodes result cells.

Values going in (``coerce_value``) follow PostgreSQL's assignment rules where the spec is
silent; values going out follow the reference's cell encoding exactly (BIGINT as strings,
timestamps as microseconds, ...). Choices where the spec is silent are marked "Choice:".

All functions are pure and safe to call from any task or thread.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import math
import re
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InvalidSql, InvalidValue

MIB = 1024 * 1024
# One TEXT/JSON/BYTES/FILE value. A row event holding such a value must still fit in one WAL
# record (wal record_size_max_bytes = 16 MiB) with room for its other columns, and the HTTP
# request body is capped at 10 MiB anyway, so anything larger can only be a runaway expression.
VALUE_SIZE_MAX_BYTES = 8 * MIB
# Numeric text ("123", "1.5e3") longer than this is refused before parsing: a 38-digit DECIMAL
# with sign, point and exponent needs about 50 characters.
NUMBER_TEXT_MAX_CHARS = 128
# Date/time text ("2024-01-01T10:00:00.123456789+05:30") longer than this is refused.
TEMPORAL_TEXT_MAX_CHARS = 64
DECIMAL_PRECISION_MAX = 38  # Arrow Decimal128 holds 38 digits
EMBEDDING_DIM_MAX = 8192  # the reference's validate_embedding_dimension
DECIMAL_DEFAULT = (38, 10)  # bare DECIMAL (§3.5)

KINDS = ("Boolean", "SmallInt", "Int", "BigInt", "Float", "Double", "Decimal", "Text", "Json",
         "Bytes", "Timestamp", "DateTime", "Date", "Time", "Uuid", "Embedding", "File")


@dataclasses.dataclass(frozen=True, slots=True)
class KalamType:
    """A column type. ``precision``/``scale`` are set only for Decimal, ``dim`` only for
    Embedding. Construction validates and raises ``ValueError`` (use ``parse_type`` for SQL
    text, which raises ``InvalidSql``)."""

    kind: str
    precision: int | None = None
    scale: int | None = None
    dim: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown type kind {self.kind!r}")
        params = (self.precision, self.scale, self.dim)
        if self.kind == "Decimal":
            p, s = self.precision, self.scale
            if type(p) is not int or type(s) is not int or self.dim is not None:
                raise ValueError("Decimal needs integer precision and scale")
            if not (1 <= p <= DECIMAL_PRECISION_MAX and 0 <= s <= p):
                raise ValueError(f"invalid Decimal({p}, {s})")
        elif self.kind == "Embedding":
            if type(self.dim) is not int or self.precision is not None or self.scale is not None:
                raise ValueError("Embedding needs an integer dim")
            if not 1 <= self.dim <= EMBEDDING_DIM_MAX:
                raise ValueError(f"invalid Embedding({self.dim})")
        elif params != (None, None, None):
            raise ValueError(f"{self.kind} takes no parameters")

    def arrow_type(self) -> pa.DataType:
        """The Arrow type of a stored column of this type (§3.5)."""
        if self.kind == "Decimal":
            return pa.decimal128(self.precision, self.scale)
        if self.kind == "Embedding":
            return pa.list_(pa.field("item", pa.float32(), nullable=False), self.dim)
        return _ARROW_TYPES[self.kind]

    def wire(self) -> str | dict:
        """The ``data_type`` of result schemas: serde's externally tagged enum form."""
        if self.kind == "Decimal":
            return {"Decimal": {"precision": self.precision, "scale": self.scale}}
        if self.kind == "Embedding":
            return {"Embedding": self.dim}
        return self.kind

    def sql(self) -> str:
        """Canonical SQL spelling (DESCRIBE); ``parse_type(t.sql()) == t`` for every type."""
        if self.kind == "Decimal":
            return f"DECIMAL({self.precision}, {self.scale})"
        if self.kind == "Embedding":
            return f"EMBEDDING({self.dim})"
        return _SQL_NAMES[self.kind]

    def to_json(self) -> str | dict:
        """JSON-ready form for catalog events (the wire form: stable and self-describing)."""
        return self.wire()

    @staticmethod
    def from_json(data: Any) -> KalamType:
        """Inverse of ``to_json``. Raises ``ValueError`` on anything else."""
        if isinstance(data, str) and data not in ("Decimal", "Embedding"):
            return KalamType(data)
        if isinstance(data, dict) and len(data) == 1:
            ((key, value),) = data.items()
            if key == "Embedding":
                return KalamType("Embedding", dim=value)
            if key == "Decimal" and isinstance(value, dict) and set(value) == {"precision", "scale"}:
                return KalamType("Decimal", precision=value["precision"], scale=value["scale"])
        raise ValueError(f"not a stored column type: {data!r}")

    def __str__(self) -> str:
        return self.sql()


_ARROW_TYPES: dict[str, pa.DataType] = {
    "Boolean": pa.bool_(), "SmallInt": pa.int16(), "Int": pa.int32(), "BigInt": pa.int64(),
    "Float": pa.float32(), "Double": pa.float64(), "Text": pa.utf8(), "Json": pa.utf8(),
    "Bytes": pa.binary(), "Timestamp": pa.timestamp("us"),
    "DateTime": pa.timestamp("us", tz="UTC"), "Date": pa.date32(), "Time": pa.time64("us"),
    "Uuid": pa.binary(16), "File": pa.utf8(),
}
_SQL_NAMES = {kind: kind.upper() for kind in KINDS}  # "SmallInt" -> "SMALLINT", ...

# ---------------------------------------------------------------------------------------------
# SQL spellings

# kind | how a "(...)" after the name is read | spellings. "length": nothing or one number (or
# MAX), ignored; "length2": up to two, ignored (MySQL DOUBLE(m,d)); "none": no parentheses.
# Choice: NUMERIC and DEC are read as DECIMAL (the reference rejects them; PostgreSQL users
# expect them). As in the reference (sqlparser's Timestamp(_, _)), every TIMESTAMP spelling,
# zoned or not, is "Timestamp"; only DATETIME is the UTC-zoned "DateTime".
_SPELLING_TABLE = """
Boolean   | none    | BOOLEAN, BOOL
SmallInt  | length  | SMALLINT, INT2
SmallInt  | none    | SMALLSERIAL, SERIAL2
Int       | length  | INT, INTEGER, INT4, MEDIUMINT
Int       | none    | SERIAL, SERIAL4, SIGNED, SIGNED INTEGER
BigInt    | length  | BIGINT, INT8
BigInt    | none    | INT64, BIGSERIAL, SERIAL8
Float     | length  | FLOAT
Float     | none    | REAL, FLOAT4
Double    | length2 | DOUBLE
Double    | none    | DOUBLE PRECISION, FLOAT8, FLOAT64
Decimal   | decimal | DECIMAL, NUMERIC, DEC
Text      | length  | TEXT, VARCHAR, CHAR, CHARACTER, CHARACTER VARYING, CHAR VARYING, NVARCHAR
Text      | length  | STRING, CLOB, CHARACTER LARGE OBJECT, CHAR LARGE OBJECT
Json      | none    | JSON, JSONB
Bytes     | length  | BYTES, BINARY, VARBINARY, BLOB
Bytes     | none    | BYTEA
Timestamp | length  | TIMESTAMP, TIMESTAMPTZ, TIMESTAMP WITH TIME ZONE, TIMESTAMP WITHOUT TIME ZONE
DateTime  | length  | DATETIME
Date      | none    | DATE
Time      | length  | TIME, TIMETZ, TIME WITH TIME ZONE, TIME WITHOUT TIME ZONE
Uuid      | none    | UUID
Embedding | dim     | EMBEDDING
File      | none    | FILE
"""
_SPELLINGS: dict[str, tuple[str, str]] = {
    spelling.strip(): (kind.strip(), rule.strip())
    for kind, rule, spellings in (line.split("|") for line in _SPELLING_TABLE.strip().splitlines())
    for spelling in spellings.split(",")
}
# Container types the reference stores as their text form.
_TEXT_CONTAINERS = frozenset({"ARRAY", "ENUM", "SET", "STRUCT"})
_TOKEN_RE = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|([0-9]+)|('(?:[^']|'')*')|(\S))", re.ASCII)
TYPE_TEXT_MAX_CHARS = 256  # a type name longer than this is not a type


def parse_type(text: str) -> KalamType:
    """Map a column type as written in DDL to a ``KalamType`` (case-insensitive).

    Raises ``InvalidSql`` ("Unsupported data type: ...") for TINYINT, UNSIGNED, INTERVAL and
    every other unmapped spelling, and for out-of-range DECIMAL/EMBEDDING parameters. Lengths
    (VARCHAR(n), TIMESTAMP(p), INT(11), ...) are accepted and ignored. SERIAL-family spellings
    give the integer type only; their SNOWFLAKE_ID() default is the DDL layer's job.
    """
    tokens = _tokenize(text)
    if tokens and (tokens[0] in _TEXT_CONTAINERS or "[" in tokens):
        return KalamType("Text")  # ARRAY<..>, ENUM(..), SET(..), STRUCT<..>, INT[]
    words, args, rest = _split_type_tokens(tokens, text)
    name = " ".join(words + rest)
    spelling = _SPELLINGS.get(name)
    if spelling is None:
        if len(words) == 1 and not rest and name.endswith(("TEXT", "STRING")):
            return KalamType("Text")  # custom *text/*string names: TINYTEXT, CITEXT, ...
        raise _unsupported(text)
    kind, rule = spelling
    if rule == "decimal":
        return _decimal_type(args, text)
    if rule == "dim":
        return _embedding_type(args)
    args_max = {"none": 0, "length": 1, "length2": 2}[rule]
    if args is not None and not (len(args) <= args_max
                                 and all(arg.isdigit() or arg == "MAX" for arg in args)):
        raise _unsupported(text)
    return KalamType(kind)


def _unsupported(text: str) -> InvalidSql:
    return InvalidSql(f"Unsupported data type: {text.strip()[:TYPE_TEXT_MAX_CHARS]}")


def _tokenize(text: str) -> list[str]:
    if len(text) > TYPE_TEXT_MAX_CHARS:
        raise _unsupported(text)
    tokens, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        assert match is not None  # the last alternative matches any non-space character
        tokens.append(match.group(match.lastindex).upper())
        position = match.end()
    return tokens


def _split_type_tokens(tokens: list[str], text: str) -> tuple[list[str], list[str] | None, list[str]]:
    """Split ``NAME WORDS [( arg, ... )] [TRAILING WORDS]`` into its three parts."""
    def is_word(token: str) -> bool:
        return token[0].isalpha() or token[0] == "_"

    i = 0
    while i < len(tokens) and is_word(tokens[i]):
        i += 1
    words, args = tokens[:i], None
    if i < len(tokens) and tokens[i] == "(":
        close = tokens.index(")", i) if ")" in tokens[i:] else -1
        inner = tokens[i + 1:close]
        if close < 0 or not inner or inner[1::2] != [","] * (len(inner) // 2) or len(inner) % 2 == 0:
            raise _unsupported(text)
        args, i = inner[0::2], close + 1
    rest = tokens[i:]
    if not words or not all(is_word(token) for token in rest):
        raise _unsupported(text)
    return words, args, rest


def _decimal_type(args: list[str] | None, text: str) -> KalamType:
    if args is None:
        precision, scale = DECIMAL_DEFAULT
    elif len(args) in (1, 2) and all(arg.isdigit() for arg in args):
        precision, scale = int(args[0]), int(args[1]) if len(args) == 2 else 0
    else:
        raise _unsupported(text)
    if not 1 <= precision <= DECIMAL_PRECISION_MAX:
        raise InvalidSql(f"DECIMAL precision must be between 1 and {DECIMAL_PRECISION_MAX}, "
                         f"got {precision}")
    if scale > precision:
        raise InvalidSql(f"DECIMAL scale ({scale}) cannot exceed precision ({precision})")
    return KalamType("Decimal", precision=precision, scale=scale)


def _embedding_type(args: list[str] | None) -> KalamType:
    if args is None or len(args) != 1:
        raise InvalidSql("EMBEDDING type requires exactly one dimension parameter, e.g., "
                         "EMBEDDING(384)")
    if not args[0].isdigit():
        raise InvalidSql(f"EMBEDDING dimension must be a positive integer, got '{args[0]}'")
    dim = int(args[0])
    if not 1 <= dim <= EMBEDDING_DIM_MAX:
        raise InvalidSql(f"EMBEDDING dimension must be between 1 and {EMBEDDING_DIM_MAX}, got {dim}")
    return KalamType("Embedding", dim=dim)


# ---------------------------------------------------------------------------------------------
# Arrow -> KalamType for computed columns

_ARROW_KIND_RULES: tuple[tuple[Callable[[pa.DataType], bool], str], ...] = (
    (pa.types.is_boolean, "Boolean"),
    (lambda t: t in (pa.int8(), pa.int16(), pa.uint8()), "SmallInt"),
    (lambda t: t in (pa.int32(), pa.uint16()), "Int"),
    (lambda t: t in (pa.int64(), pa.uint32(), pa.uint64()), "BigInt"),
    (lambda t: t in (pa.float16(), pa.float32()), "Float"),
    (pa.types.is_float64, "Double"),
    (lambda t: pa.types.is_fixed_size_binary(t) and t.byte_width == 16, "Uuid"),
    (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t)
     or pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t), "Bytes"),
    (lambda t: pa.types.is_timestamp(t) and t.tz is None, "Timestamp"),
    (pa.types.is_timestamp, "DateTime"),
    (pa.types.is_date, "Date"),
    (pa.types.is_time, "Time"),
)


def type_from_arrow(arrow: pa.DataType) -> KalamType:
    """The ``KalamType`` reported for a computed result column of Arrow type ``arrow``.

    Narrow integers widen to the nearest kind that holds them (int8/uint8 → SmallInt, uint16 →
    Int, uint32/uint64 → BigInt; BigInt is sent as a string, so uint64 loses nothing).
    Choice: date64 → Date (its cells are sent as whole days, like date32); every timestamp unit
    maps to Timestamp/DateTime by time zone and is sent in microseconds; time32/time64 → Time.
    Decimals of any width within precision 38 → Decimal; a FixedSizeList<Float32> of 1..8192
    → Embedding; dictionaries map by value type; anything else → Text.
    """
    if pa.types.is_dictionary(arrow):
        return type_from_arrow(arrow.value_type)
    for matches, kind in _ARROW_KIND_RULES:
        if matches(arrow):
            return KalamType(kind)
    if pa.types.is_decimal(arrow) and 1 <= arrow.precision <= DECIMAL_PRECISION_MAX \
            and 0 <= arrow.scale <= arrow.precision:
        return KalamType("Decimal", precision=arrow.precision, scale=arrow.scale)
    if pa.types.is_fixed_size_list(arrow) and arrow.value_type == pa.float32() \
            and 1 <= arrow.list_size <= EMBEDDING_DIM_MAX:
        return KalamType("Embedding", dim=arrow.list_size)
    return KalamType("Text")


# ---------------------------------------------------------------------------------------------
# Input coercion (INSERT / UPDATE)

class _Rejected(Exception):
    """Internal: a coercer's reason; ``coerce_value`` turns it into ``InvalidValue``."""


_INT_RANGES = {"SmallInt": (-(2**15), 2**15 - 1), "Int": (-(2**31), 2**31 - 1),
               "BigInt": (-(2**63), 2**63 - 1)}
_INT64_RANGE = _INT_RANGES["BigInt"]
_INT32_RANGE = _INT_RANGES["Int"]
_FLOAT32_MAX = 3.4028234663852886e38
_MICROS_PER_DAY = 86_400_000_000
_EPOCH = dt.datetime(1970, 1, 1)
_ONE_MICROSECOND = dt.timedelta(microseconds=1)
_INT_TEXT_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_NUMBER_TEXT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_BOOL_TEXT = {"true": True, "t": True, "yes": True, "y": True, "on": True, "1": True,
              "false": False, "f": False, "no": False, "n": False, "off": False, "0": False}
_NON_FINITE = "NaN and Infinity cannot be stored (they have no JSON form in results)"


def coerce_value(value: Any, t: KalamType, column_name: str) -> Any:
    """Convert one SQL literal or JSON ``params`` value for storage in a column of type ``t``.

    Args:
        value: None, bool, int, float, str, bytes, decimal.Decimal, datetime/date/time, or for
            JSON/EMBEDDING/BYTES columns a list/dict as decoded from JSON.
        t: the column type.
        column_name: named in the error message.
    Returns:
        A value ``pa.array([...], type=t.arrow_type())`` accepts: bool, int, float, Decimal
        (already at the column's scale), str, bytes, list[float]; timestamps, dates and times
        as int microseconds / days / microseconds since midnight. None stays None (NOT NULL is
        the caller's check).
    Raises:
        InvalidValue naming the column and type, for a value of the wrong kind, out of range,
        NaN/Infinity, or larger than ``VALUE_SIZE_MAX_BYTES``.
    """
    if value is None:
        return None
    try:
        return _COERCERS[t.kind](value, t)
    except _Rejected as exc:
        raise InvalidValue(f"Invalid value for column '{column_name}' ({t.sql()}): {exc}") from None


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def _number_text(value: str) -> str:
    text = value.strip()
    if len(text) > NUMBER_TEXT_MAX_CHARS or not _NUMBER_TEXT_RE.fullmatch(text):
        raise _Rejected(f"expected a number, got {_describe(value)}")
    return text


def _check_size(size_bytes: int) -> None:
    if size_bytes > VALUE_SIZE_MAX_BYTES:
        raise _Rejected(f"value of {size_bytes} bytes exceeds the limit of "
                        f"{VALUE_SIZE_MAX_BYTES} bytes")


def _to_int(value: Any) -> int:
    """Integers, integral floats/decimals and digit strings (JSON clients send BIGINT as text).
    Choice: a fractional number is refused rather than rounded as PostgreSQL would."""
    if isinstance(value, bool):
        raise _Rejected("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float | decimal.Decimal):
        finite = math.isfinite(value) if isinstance(value, float) else value.is_finite()
        if finite and isinstance(value, decimal.Decimal) and value.adjusted() > 40:
            raise _Rejected(f"{_describe(value)} is out of range")  # before int() expands it
        if not (finite and value == int(value)):
            raise _Rejected(f"expected an integer, got {_describe(value)}")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if len(text) <= NUMBER_TEXT_MAX_CHARS and _INT_TEXT_RE.fullmatch(text):
            return int(text)
    raise _Rejected(f"expected an integer, got {_describe(value)}")


def _in_range(number: int, bounds: tuple[int, int], what: str) -> int:
    if not bounds[0] <= number <= bounds[1]:
        raise _Rejected(f"{number} is out of range for {what} [{bounds[0]}, {bounds[1]}]")
    return number


def _coerce_int(value: Any, t: KalamType) -> int:
    return _in_range(_to_int(value), _INT_RANGES[t.kind], t.sql())


def _coerce_bool(value: Any, t: KalamType) -> bool:
    """bool, or PostgreSQL's boolean words ('true'/'false'/'t'/'f'/'yes'/'no'/'on'/'off'/'1'/'0')."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
        return _BOOL_TEXT[value.strip().lower()]
    raise _Rejected(f"expected a boolean, got {_describe(value)}")


def _coerce_float(value: Any, t: KalamType) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal | str):
        raise _Rejected(f"expected a number, got {_describe(value)}")
    try:
        number = float(_number_text(value) if isinstance(value, str) else value)
    except (OverflowError, ValueError):  # a huge int; a signalling-NaN Decimal
        number = math.inf
    if not math.isfinite(number):
        raise _Rejected(_NON_FINITE)
    if t.kind == "Float" and abs(number) > _FLOAT32_MAX:
        raise _Rejected(f"{number} is out of range for FLOAT")
    return number


def _coerce_decimal(value: Any, t: KalamType) -> decimal.Decimal:
    """Rounded half away from zero to the column's scale (as PostgreSQL does); more integer
    digits than ``precision - scale`` is refused."""
    if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal | str):
        raise _Rejected(f"expected a number, got {_describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Rejected(_NON_FINITE)
    number = decimal.Decimal(_number_text(value) if isinstance(value, str) else
                             repr(value) if isinstance(value, float) else value)
    if not number.is_finite():
        raise _Rejected(_NON_FINITE)
    integer_digits = t.precision - t.scale
    too_many = (f"{_describe(value)} does not fit: at most {integer_digits} digits before the "
                f"point")
    if number and number.adjusted() >= integer_digits:
        raise _Rejected(too_many)
    context = decimal.Context(prec=2 * DECIMAL_PRECISION_MAX + 2, rounding=decimal.ROUND_HALF_UP)
    rounded = number.quantize(decimal.Decimal(1).scaleb(-t.scale), context=context)
    if rounded and rounded.adjusted() >= integer_digits:  # 9.995 -> 10.00 in DECIMAL(3, 2)
        raise _Rejected(too_many)
    return rounded


def _coerce_text(value: Any, t: KalamType) -> str:
    """Choice: numbers and booleans become their text, as PostgreSQL's assignment cast (automatic
    I/O conversion to string types) and the reference's DataFusion cast both do. Bytes, lists
    and objects are refused."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | decimal.Decimal):
        value = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Rejected(_NON_FINITE)
        value = repr(value)
    if not isinstance(value, str):
        raise _Rejected(f"expected text, got {_describe(value)}")
    if value.isascii():
        _check_size(len(value))
        return value
    try:
        _check_size(len(value.encode("utf-8")))
    except UnicodeEncodeError:
        raise _Rejected("text holds a lone UTF-16 surrogate, which UTF-8 cannot store") from None
    return value


def _reject_constant(name: str) -> Any:
    raise _Rejected(f"JSON text may not contain {name}")


def _parse_json_text(text: str) -> Any:
    _check_size(len(text))
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _Rejected(f"invalid JSON text: {str(exc)[:80]}") from None


def _coerce_json(value: Any, t: KalamType) -> str:
    """A string must hold JSON text and is stored as given; any other JSON value (dict, list,
    number, bool) is stored as its compact JSON text."""
    if isinstance(value, str):
        parsed = _parse_json_text(_coerce_text(value, t))
        if t.kind == "File" and not isinstance(parsed, dict):
            raise _Rejected("a FILE value must be a FileRef JSON object")
        return value
    if isinstance(value, decimal.Decimal) and value.is_finite() and t.kind == "Json":
        return str(value)
    if t.kind == "File" and not isinstance(value, dict):
        raise _Rejected(f"a FILE value must be a FileRef JSON object, got {_describe(value)}")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        raise _Rejected(f"not a JSON value: {_describe(value)}") from None
    return _coerce_text(text, t)


def _coerce_bytes(value: Any, t: KalamType) -> bytes:
    """bytes, a list of byte numbers 0..255, or text (stored as its UTF-8 bytes)."""
    if isinstance(value, str):
        value = _coerce_text(value, t).encode("utf-8")
    elif isinstance(value, list | tuple):
        _check_size(len(value))
        if not all(type(item) is int and 0 <= item <= 255 for item in value):
            raise _Rejected("a byte list must hold integers 0..255")
        value = bytes(value)
    elif isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value)
    else:
        raise _Rejected(f"expected bytes, got {_describe(value)}")
    _check_size(len(value))
    return value


def _parse_temporal(value: Any, parse: Callable[[str], Any], expected: str) -> Any:
    """Parse a non-numeric string with ``parse``; digit strings and other values pass through."""
    if not isinstance(value, str) or _INT_TEXT_RE.fullmatch(value.strip()):
        return value
    if len(value) > TEMPORAL_TEXT_MAX_CHARS:
        raise _Rejected(f"date/time text longer than {TEMPORAL_TEXT_MAX_CHARS} characters")
    try:
        return parse(value.strip())
    except ValueError:
        raise _Rejected(f"expected {expected}, got {_describe(value)}") from None


def _datetime_micros(value: dt.datetime) -> int:
    """Microseconds since the epoch; a naive value is UTC. Plain timedelta arithmetic, so the
    years 1 and 9999 with any offset cannot overflow as ``astimezone`` would."""
    offset = value.utcoffset() or dt.timedelta(0)
    return (value.replace(tzinfo=None) - _EPOCH - offset) // _ONE_MICROSECOND


def _coerce_timestamp(value: Any, t: KalamType) -> int:
    """int microseconds since the epoch, digit text, an ISO-8601 string or a datetime/date.
    Naive times are taken as UTC; zoned ones are converted to UTC."""
    value = _parse_temporal(value, dt.datetime.fromisoformat, "an ISO-8601 timestamp")
    if isinstance(value, dt.datetime):
        return _datetime_micros(value)
    if isinstance(value, dt.date):
        return (value - _EPOCH.date()).days * _MICROS_PER_DAY
    return _in_range(_to_int(value), _INT64_RANGE, "microseconds")


def _coerce_date(value: Any, t: KalamType) -> int:
    """int days since the epoch, digit text, 'YYYY-MM-DD', a date, or a datetime (its UTC date,
    as PostgreSQL's timestamp-to-date cast)."""
    value = _parse_temporal(value, dt.date.fromisoformat, "a 'YYYY-MM-DD' date")
    if isinstance(value, dt.datetime):
        return _datetime_micros(value) // _MICROS_PER_DAY
    if isinstance(value, dt.date):
        return (value - _EPOCH.date()).days
    return _in_range(_to_int(value), _INT32_RANGE, "days")


def _coerce_time(value: Any, t: KalamType) -> int:
    """int microseconds since midnight, digit text, 'HH:MM[:SS[.ffffff]]' or a time. A time
    zone in the text is ignored, as PostgreSQL does for TIME."""
    value = _parse_temporal(value, dt.time.fromisoformat, "an 'HH:MM:SS[.ffffff]' time")
    if isinstance(value, dt.time):
        seconds = (value.hour * 60 + value.minute) * 60 + value.second
        return seconds * 1_000_000 + value.microsecond
    return _in_range(_to_int(value), (0, _MICROS_PER_DAY - 1), "microseconds since midnight")


def _coerce_uuid(value: Any, t: KalamType) -> bytes:
    """A UUID string (any form ``uuid.UUID`` reads), 16 bytes, or a ``uuid.UUID``."""
    if isinstance(value, uuid.UUID):
        return value.bytes
    if isinstance(value, bytes | bytearray) and len(value) == 16:
        return bytes(value)
    if isinstance(value, str):
        try:
            return uuid.UUID(value.strip()).bytes
        except ValueError:
            pass
    raise _Rejected(f"expected a UUID, got {_describe(value)}")


def _coerce_embedding(value: Any, t: KalamType) -> list[float]:
    """A list of numbers, or a string holding a JSON array; its length must equal the dim."""
    if isinstance(value, str):
        value = _parse_json_text(value)
    if not isinstance(value, list | tuple):
        raise _Rejected(f"expected an array of {t.dim} numbers, got {_describe(value)}")
    if len(value) != t.dim:
        raise _Rejected(f"expected {t.dim} numbers, got {len(value)}")
    floats = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float | decimal.Decimal):
            raise _Rejected(f"embedding elements must be numbers, got {_describe(item)}")
        floats.append(_coerce_float(item, _FLOAT))
    return floats


_FLOAT = KalamType("Float")
_COERCERS: dict[str, Callable[[Any, KalamType], Any]] = {
    "Boolean": _coerce_bool, "SmallInt": _coerce_int, "Int": _coerce_int, "BigInt": _coerce_int,
    "Float": _coerce_float, "Double": _coerce_float, "Decimal": _coerce_decimal,
    "Text": _coerce_text, "Json": _coerce_json, "File": _coerce_json, "Bytes": _coerce_bytes,
    "Timestamp": _coerce_timestamp, "DateTime": _coerce_timestamp, "Date": _coerce_date,
    "Time": _coerce_time, "Uuid": _coerce_uuid, "Embedding": _coerce_embedding,
}
assert set(_COERCERS) == set(KINDS)

# ---------------------------------------------------------------------------------------------
# JSON cell encoding (results, WS rows, topic payloads)


def column_to_json(array: pa.Array | pa.ChunkedArray, t: KalamType) -> list:
    """Encode one result column as JSON-ready Python values, one per row (§3.5).

    ``t`` is the column's declared type, or ``type_from_arrow(array.type)`` for a computed
    column. NULL is None. BigInt → decimal string; Decimal → string with exactly ``scale``
    decimals; Bytes → list of ints; Timestamp/DateTime → int microseconds (other units are
    truncated to µs); Date → int days; Time → int microseconds; Uuid → canonical string;
    Embedding → list of floats; Json/File/Text → the stored text.
    Raises ``InvalidValue`` for NaN/Infinity in Float/Double/Embedding cells (no JSON form).
    """
    if isinstance(array, pa.ChunkedArray):
        cells: list = []
        for chunk in array.chunks:
            cells.extend(_encode_chunk(chunk, t))
        return cells
    return _encode_chunk(array, t)


def table_to_json_rows(table: pa.Table, types: list[KalamType]) -> list[list]:
    """Rows of ``table`` as lists of JSON-ready cells in column order; ``types[i]`` describes
    column i."""
    assert len(types) == table.num_columns, (len(types), table.num_columns)
    columns = [column_to_json(table.column(i), t) for i, t in enumerate(types)]
    if not columns:
        return [[] for _ in range(table.num_rows)]
    return [list(row) for row in zip(*columns, strict=True)]


def _encode_chunk(array: pa.Array, t: KalamType) -> list:
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if array.null_count == len(array):
        return [None] * len(array)
    return _ENCODERS[t.kind](array, t)


def _encode_plain(array: pa.Array, t: KalamType) -> list:
    return array.to_pylist()


def _encode_bigint(array: pa.Array, t: KalamType) -> list:
    return pc.cast(array, pa.utf8()).to_pylist()


def _check_finite(values: pa.Array) -> None:
    if pc.any(pc.invert(pc.is_finite(values))).as_py():
        raise InvalidValue("Invalid float value: NaN and Infinity cannot be encoded as JSON")


def _encode_float(array: pa.Array, t: KalamType) -> list:
    if array.type == pa.float16():
        array = pc.cast(array, pa.float32())
    if pa.types.is_floating(array.type):
        _check_finite(array)
    return array.to_pylist()


def _encode_decimal(array: pa.Array, t: KalamType) -> list:
    if array.type != t.arrow_type():
        array = pc.cast(array, t.arrow_type())
    return pc.cast(array, pa.utf8()).to_pylist()  # Arrow renders exactly `scale` decimals


def _encode_text(array: pa.Array, t: KalamType) -> list:
    """Strings as they are; a computed column of an unmapped type as its text (nested values
    as compact JSON text)."""
    arrow = array.type
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow) or pa.types.is_string_view(arrow):
        return array.to_pylist()
    if pa.types.is_nested(arrow):
        return [None if v is None else json.dumps(v, default=str, separators=(",", ":"))
                for v in array.to_pylist()]
    try:
        return pc.cast(array, pa.utf8()).to_pylist()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return [None if v is None else str(v) for v in array.to_pylist()]


def _encode_bytes(array: pa.Array, t: KalamType) -> list:
    """Each value as a list of byte numbers. A Binary array's int32 offsets are already the
    layout of a List<UInt8>, so it is re-typed without copying and converted in one call."""
    if array.type != pa.binary():
        return [None if b is None else list(b) for b in array.to_pylist()]
    validity, offsets, data = array.buffers()
    data = data if data is not None else pa.py_buffer(b"")
    values = pa.Array.from_buffers(pa.uint8(), data.size, [None, data])
    as_lists = pa.Array.from_buffers(pa.list_(pa.uint8()), len(array), [validity, offsets],
                                     offset=array.offset, children=[values])
    return as_lists.to_pylist()


_TEMPORAL_TARGETS = {"Date": (pa.date32(), pa.int32()), "Time": (pa.time64("us"), pa.int64())}


def _encode_temporal(array: pa.Array, t: KalamType) -> list:
    """Timestamps in µs (other units truncated), dates in days, times in µs since midnight."""
    if t.kind in ("Timestamp", "DateTime"):
        target, integers = pa.timestamp("us", array.type.tz), pa.int64()
    else:
        target, integers = _TEMPORAL_TARGETS[t.kind]
    if array.type != target:
        array = pc.cast(array, target, safe=False)
    return array.cast(integers).to_pylist()


_HEX_BYTES = pa.array([f"{byte:02x}" for byte in range(256)])
_UUID_GROUPS = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))


def _encode_uuid(array: pa.Array, t: KalamType) -> list:
    """Canonical lowercase strings, built with Arrow kernels: each byte becomes two hex digits
    (a take from a 256-entry table), 16 of them are joined, then the five groups get dashes."""
    if array.type != pa.binary(16):
        return _encode_text(array, t)
    raw = pa.Array.from_buffers(pa.uint8(), 16 * len(array), [None, array.buffers()[1]],
                                offset=16 * array.offset)
    digits = pa.FixedSizeListArray.from_arrays(pc.take(_HEX_BYTES, raw), 16,
                                               mask=pc.is_null(array))
    hex32 = pc.binary_join(pc.cast(digits, pa.list_(pa.utf8())), "")
    groups = [pc.utf8_slice_codeunits(hex32, start, stop) for start, stop in _UUID_GROUPS]
    return pc.binary_join_element_wise(*groups, "-").to_pylist()


def _encode_embedding(array: pa.Array, t: KalamType) -> list:
    _check_finite(array.flatten())
    return array.to_pylist()


_ENCODERS: dict[str, Callable[[pa.Array, KalamType], list]] = {
    "Boolean": _encode_plain, "SmallInt": _encode_plain, "Int": _encode_plain,
    "BigInt": _encode_bigint, "Float": _encode_float, "Double": _encode_float,
    "Decimal": _encode_decimal, "Text": _encode_text, "Json": _encode_text, "File": _encode_text,
    "Bytes": _encode_bytes, "Timestamp": _encode_temporal, "DateTime": _encode_temporal,
    "Date": _encode_temporal, "Time": _encode_temporal, "Uuid": _encode_uuid,
    "Embedding": _encode_embedding,
}
assert set(_ENCODERS) == set(KINDS)
