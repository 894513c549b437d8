"""Column types (PROTOCOL.md §3.5): SQL spellings, wire names, Arrow types, input coercion and
the JSON cell encoding of results."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid

import pyarrow as pa
import pytest

from engine import types
from engine.errors import InvalidSql, InvalidValue
from engine.types import (
    KINDS,
    KalamType,
    coerce_value,
    column_to_json,
    parse_type,
    table_to_json_rows,
    type_from_arrow,
)

D = decimal.Decimal
UUID_TEXT = "017f22e2-79b0-7cc3-98c4-dc0c0c07398f"
UUID_BYTES = uuid.UUID(UUID_TEXT).bytes
DECIMAL_10_2 = {"Decimal": {"precision": 10, "scale": 2}}

# ---------------------------------------------------------------------------------------------
# SQL spellings -> data_type wire names

SPELLINGS = [
    ("BOOLEAN", "Boolean"), ("BOOL", "Boolean"),
    ("SMALLINT", "SmallInt"), ("INT2", "SmallInt"), ("SMALLSERIAL", "SmallInt"),
    ("INT", "Int"), ("INTEGER", "Int"), ("INT4", "Int"), ("MEDIUMINT", "Int"), ("SERIAL", "Int"),
    ("SIGNED", "Int"), ("INT(11)", "Int"),
    ("BIGINT", "BigInt"), ("INT8", "BigInt"), ("BIGSERIAL", "BigInt"), ("INT64", "BigInt"),
    ("FLOAT", "Float"), ("REAL", "Float"), ("FLOAT4", "Float"), ("FLOAT(24)", "Float"),
    ("DOUBLE", "Double"), ("DOUBLE PRECISION", "Double"), ("FLOAT8", "Double"),
    ("FLOAT64", "Double"), ("DOUBLE(10,2)", "Double"),
    ("DECIMAL(10,2)", DECIMAL_10_2), ("DECIMAL(10, 2)", DECIMAL_10_2),
    ("DECIMAL", {"Decimal": {"precision": 38, "scale": 10}}),
    ("DECIMAL(5)", {"Decimal": {"precision": 5, "scale": 0}}),
    ("DECIMAL(38,38)", {"Decimal": {"precision": 38, "scale": 38}}),
    ("NUMERIC(18,4)", {"Decimal": {"precision": 18, "scale": 4}}),
    ("TEXT", "Text"), ("VARCHAR(255)", "Text"), ("VARCHAR", "Text"), ("CHAR", "Text"),
    ("CHAR(3)", "Text"), ("CHARACTER VARYING(20)", "Text"), ("STRING", "Text"),
    ("NVARCHAR(10)", "Text"), ("CLOB", "Text"), ("VARCHAR(MAX)", "Text"),
    ("MEDIUMTEXT", "Text"), ("LONGTEXT", "Text"), ("CITEXT", "Text"), ("MYSTRING", "Text"),
    ("ARRAY<INT>", "Text"), ("INT[]", "Text"), ("TEXT[][]", "Text"), ("ENUM('a','b')", "Text"),
    ("SET('x','y')", "Text"), ("STRUCT<a INT, b TEXT>", "Text"),
    ("JSON", "Json"), ("JSONB", "Json"),
    ("BYTES", "Bytes"), ("BINARY", "Bytes"), ("BINARY(16)", "Bytes"), ("VARBINARY(64)", "Bytes"),
    ("BLOB", "Bytes"), ("BYTEA", "Bytes"),
    ("TIMESTAMP", "Timestamp"), ("TIMESTAMP(3)", "Timestamp"), ("TIMESTAMPTZ", "Timestamp"),
    ("TIMESTAMP WITH TIME ZONE", "Timestamp"), ("TIMESTAMP(6) WITHOUT TIME ZONE", "Timestamp"),
    ("DATETIME", "DateTime"), ("DATETIME(6)", "DateTime"),
    ("DATE", "Date"), ("TIME", "Time"), ("TIME(3)", "Time"), ("TIME WITH TIME ZONE", "Time"),
    ("UUID", "Uuid"),
    ("EMBEDDING(384)", {"Embedding": 384}), ("EMBEDDING(1)", {"Embedding": 1}),
    ("EMBEDDING(8192)", {"Embedding": 8192}),
    ("FILE", "File"),
]


@pytest.mark.parametrize(("spelling", "wire"), SPELLINGS)
def test_parse_type__spelling__maps_to_wire_name(spelling: str, wire: object) -> None:
    assert parse_type(spelling).wire() == wire


@pytest.mark.parametrize(("spelling", "wire"), SPELLINGS)
def test_parse_type__any_case_and_spacing__same_type(spelling: str, wire: object) -> None:
    assert parse_type(f"  {spelling.lower()} ").wire() == wire


REJECTED = [
    ("TINYINT", "Unsupported data type: TINYINT"),
    ("INT1", "Unsupported data type"),
    ("UNSIGNED", "Unsupported data type"),
    ("INT UNSIGNED", "Unsupported data type"),
    ("BIGINT(20) UNSIGNED", "Unsupported data type"),
    ("INTERVAL", "Unsupported data type"),
    ("INTERVAL DAY", "Unsupported data type"),
    ("GEOGRAPHY", "Unsupported data type"),
    ("TINYBLOB", "Unsupported data type"),
    ("", "Unsupported data type"),
    ("VARCHAR(", "Unsupported data type"),
    ("VARCHAR()", "Unsupported data type"),
    ("VARCHAR(abc)", "Unsupported data type"),
    ("BOOLEAN(1)", "Unsupported data type"),
    ("DECIMAL(-1,2)", "Unsupported data type"),
    ("DECIMAL(1,2,3)", "Unsupported data type"),
    ("DECIMAL(0)", "DECIMAL precision must be between 1 and 38, got 0"),
    ("DECIMAL(39,2)", "DECIMAL precision must be between 1 and 38, got 39"),
    ("DECIMAL(5,6)", "DECIMAL scale (6) cannot exceed precision (5)"),
    ("EMBEDDING", "EMBEDDING type requires exactly one dimension parameter"),
    ("EMBEDDING(3,4)", "EMBEDDING type requires exactly one dimension parameter"),
    ("EMBEDDING(x)", "EMBEDDING dimension must be a positive integer, got 'X'"),
    ("EMBEDDING(0)", "EMBEDDING dimension must be between 1 and 8192, got 0"),
    ("EMBEDDING(8193)", "EMBEDDING dimension must be between 1 and 8192, got 8193"),
    ("INT" * 100, "Unsupported data type"),
]


@pytest.mark.parametrize(("spelling", "message"), REJECTED)
def test_parse_type__unmapped_or_invalid__invalid_sql(spelling: str, message: str) -> None:
    with pytest.raises(InvalidSql, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_type(spelling)


ALL_TYPES = [KalamType(kind) for kind in KINDS if kind not in ("Decimal", "Embedding")] + [
    KalamType("Decimal", precision=10, scale=2), KalamType("Decimal", precision=38, scale=0),
    KalamType("Embedding", dim=3),
]


@pytest.mark.parametrize("t", ALL_TYPES, ids=str)
def test_sql__canonical_spelling__parses_back_to_the_same_type(t: KalamType) -> None:
    assert parse_type(t.sql()) == t


@pytest.mark.parametrize(("t", "sql"), [
    (KalamType("BigInt"), "BIGINT"), (KalamType("SmallInt"), "SMALLINT"),
    (KalamType("DateTime"), "DATETIME"), (KalamType("Bytes"), "BYTES"),
    (KalamType("Decimal", precision=10, scale=2), "DECIMAL(10, 2)"),
    (KalamType("Embedding", dim=384), "EMBEDDING(384)"), (KalamType("File"), "FILE"),
])
def test_sql__describe_spelling__matches_reference_sql_name(t: KalamType, sql: str) -> None:
    assert t.sql() == sql
    assert str(t) == sql


@pytest.mark.parametrize("t", ALL_TYPES, ids=str)
def test_to_json__catalog_form__round_trips_through_json_text(t: KalamType) -> None:
    stored = json.loads(json.dumps(t.to_json()))
    assert KalamType.from_json(stored) == t
    assert stored == t.wire()


@pytest.mark.parametrize("data", [
    "Decimal", "Embedding", "Varchar", {"Decimal": {"precision": 10}}, {"Embedding": "3"},
    {"Embedding": True}, {"Embedding": 0}, {"Decimal": {"precision": 2, "scale": 3}},
    {"Text": None, "Int": None}, 7, None,
])
def test_from_json__malformed__value_error(data: object) -> None:
    with pytest.raises(ValueError):
        KalamType.from_json(data)


@pytest.mark.parametrize("kwargs", [
    {"kind": "Varchar"}, {"kind": "Int", "dim": 3}, {"kind": "Decimal", "precision": 10},
    {"kind": "Decimal", "precision": 0, "scale": 0}, {"kind": "Embedding", "dim": 9000},
    {"kind": "Embedding", "dim": 3, "scale": 1},
])
def test_kalam_type__invalid_parameters__value_error(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        KalamType(**kwargs)


# ---------------------------------------------------------------------------------------------
# Arrow

ARROW = [
    ("BOOLEAN", pa.bool_()), ("SMALLINT", pa.int16()), ("INT", pa.int32()),
    ("BIGINT", pa.int64()), ("FLOAT", pa.float32()), ("DOUBLE", pa.float64()),
    ("DECIMAL(10,2)", pa.decimal128(10, 2)), ("TEXT", pa.utf8()), ("JSON", pa.utf8()),
    ("BYTES", pa.binary()), ("TIMESTAMP", pa.timestamp("us")),
    ("DATETIME", pa.timestamp("us", tz="UTC")), ("DATE", pa.date32()),
    ("TIME", pa.time64("us")), ("UUID", pa.binary(16)),
    ("EMBEDDING(4)", pa.list_(pa.field("item", pa.float32(), nullable=False), 4)),
    ("FILE", pa.utf8()),
]


@pytest.mark.parametrize(("spelling", "arrow"), ARROW)
def test_arrow_type__each_kind__matches_protocol_table(spelling: str, arrow: pa.DataType) -> None:
    assert parse_type(spelling).arrow_type() == arrow


@pytest.mark.parametrize("t", ALL_TYPES, ids=str)
def test_type_from_arrow__stored_column__maps_back_except_text_aliases(t: KalamType) -> None:
    # Json and File are stored as Utf8, so a computed column of that type reports Text.
    expected = KalamType("Text") if t.kind in ("Json", "File") else t
    assert type_from_arrow(t.arrow_type()) == expected


@pytest.mark.parametrize(("arrow", "wire"), [
    (pa.int8(), "SmallInt"), (pa.uint8(), "SmallInt"), (pa.uint16(), "Int"),
    (pa.uint32(), "BigInt"), (pa.uint64(), "BigInt"), (pa.float16(), "Float"),
    (pa.large_string(), "Text"), (pa.string_view(), "Text"), (pa.large_binary(), "Bytes"),
    (pa.binary(8), "Bytes"), (pa.timestamp("ns"), "Timestamp"),
    (pa.timestamp("ns", tz="+00:00"), "DateTime"), (pa.timestamp("ms"), "Timestamp"),
    (pa.date64(), "Date"), (pa.time32("ms"), "Time"), (pa.time64("ns"), "Time"),
    (pa.decimal128(5, 1), {"Decimal": {"precision": 5, "scale": 1}}),
    (pa.decimal256(76, 2), "Text"), (pa.list_(pa.int32()), "Text"),
    (pa.list_(pa.float64(), 3), "Text"), (pa.struct([("a", pa.int32())]), "Text"),
    (pa.null(), "Text"), (pa.duration("s"), "Text"),
    (pa.dictionary(pa.int32(), pa.utf8()), "Text"), (pa.dictionary(pa.int8(), pa.int64()), "BigInt"),
])
def test_type_from_arrow__computed_column__nearest_kind_or_text(arrow: pa.DataType, wire: object) -> None:
    assert type_from_arrow(arrow).wire() == wire


# ---------------------------------------------------------------------------------------------
# Input coercion

ACCEPTED = [
    ("BOOLEAN", True, True), ("BOOLEAN", "true", True), ("BOOLEAN", " FALSE ", False),
    ("BOOLEAN", "t", True), ("BOOLEAN", "off", False),
    ("SMALLINT", 32767, 32767), ("SMALLINT", -32768, -32768), ("SMALLINT", "12", 12),
    ("INT", 2**31 - 1, 2**31 - 1), ("INT", 7.0, 7), ("INT", D("8"), 8), ("INT", " -5 ", -5),
    ("BIGINT", "9223372036854775807", 2**63 - 1), ("BIGINT", -(2**63), -(2**63)),
    ("FLOAT", 1.5, 1.5), ("FLOAT", 2, 2.0), ("FLOAT", "1e3", 1000.0),
    ("DOUBLE", D("0.25"), 0.25), ("DOUBLE", "-.5", -0.5), ("DOUBLE", 10**300, 1e300),
    ("DECIMAL(10,2)", 200.75, D("200.75")), ("DECIMAL(10,2)", "200.7", D("200.70")),
    ("DECIMAL(10,2)", 5, D("5.00")), ("DECIMAL(10,2)", D("1.005"), D("1.01")),
    ("DECIMAL(10,2)", "-1.005", D("-1.01")), ("DECIMAL(10,2)", "12345678.994", D("12345678.99")),
    ("DECIMAL(3,3)", "0.9994", D("0.999")), ("DECIMAL(5,0)", "1e4", D("10000")),
    ("TEXT", "héllo", "héllo"), ("TEXT", 42, "42"), ("TEXT", 1.5, "1.5"), ("TEXT", True, "true"),
    ("TEXT", D("2.50"), "2.50"),
    ("JSON", {"a": [1, None]}, '{"a":[1,null]}'), ("JSON", [1, "x"], '[1,"x"]'),
    ("JSON", 3, "3"), ("JSON", False, "false"), ("JSON", '{"a": 1}', '{"a": 1}'),
    ("JSON", '"s"', '"s"'), ("JSON", D("1.50"), "1.50"), ("JSON", {"k": "ü"}, '{"k":"ü"}'),
    ("FILE", {"id": "1", "name": "a.pdf"}, '{"id":"1","name":"a.pdf"}'),
    ("FILE", '{"id":"7","sub":"f0001"}', '{"id":"7","sub":"f0001"}'),
    ("BYTES", b"hi", b"hi"), ("BYTES", bytearray(b"\x00\xff"), b"\x00\xff"),
    ("BYTES", [104, 105], b"hi"), ("BYTES", "hé", "hé".encode()), ("BYTES", [], b""),
    ("TIMESTAMP", 1_700_000_000_000_000, 1_700_000_000_000_000),
    ("TIMESTAMP", "1700000000000000", 1_700_000_000_000_000),
    ("TIMESTAMP", "2024-01-01T00:00:00Z", 1_704_067_200_000_000),
    ("TIMESTAMP", "2024-01-01 00:00:00.5", 1_704_067_200_500_000),
    ("TIMESTAMP", "2024-01-01T05:30:00+05:30", 1_704_067_200_000_000),
    ("TIMESTAMP", "2024-01-01", 1_704_067_200_000_000),
    ("TIMESTAMP", dt.datetime(2024, 1, 1), 1_704_067_200_000_000),
    ("TIMESTAMP", dt.datetime(1969, 12, 31, 23, 59, 59, 999999), -1),
    ("DATETIME", dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
     1_704_067_200_000_000),
    ("DATETIME", dt.date(1970, 1, 2), 86_400_000_000),
    ("DATE", 19723, 19723), ("DATE", "2024-01-01", 19723), ("DATE", "-1", -1),
    ("DATE", dt.date(1970, 1, 1), 0), ("DATE", dt.datetime(2024, 1, 1, 23, 59), 19723),
    ("DATE", "1969-12-31", -1), ("DATE", dt.datetime(1969, 12, 31, 23, 59), -1),
    ("DATE", dt.datetime(2024, 1, 2, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))), 19723),
    ("TIMESTAMP", "0001-01-01T00:00:00+01:00", -62_135_600_400_000_000),
    ("TIMESTAMP", "9999-12-31T23:59:59.999999-01:00", 253_402_304_399_999_999),
    ("TIME", 0, 0), ("TIME", "12:34:56", 45_296_000_000), ("TIME", "00:00:01.25", 1_250_000),
    ("TIME", "23:59", 86_340_000_000), ("TIME", dt.time(0, 0, 0, 7), 7),
    ("TIME", "10:00:00+05:00", 36_000_000_000),
    ("UUID", UUID_TEXT, UUID_BYTES), ("UUID", UUID_TEXT.upper(), UUID_BYTES),
    ("UUID", UUID_BYTES, UUID_BYTES), ("UUID", uuid.UUID(UUID_TEXT), UUID_BYTES),
    ("UUID", "{" + UUID_TEXT + "}", UUID_BYTES),
    ("EMBEDDING(3)", [1, 0.5, D("2")], [1.0, 0.5, 2.0]), ("EMBEDDING(2)", "[0.5, -1]", [0.5, -1.0]),
    ("EMBEDDING(2)", (1.0, 2.0), [1.0, 2.0]),
]


@pytest.mark.parametrize(("spelling", "value", "expected"), ACCEPTED)
def test_coerce__accepted_value__converted_for_storage(spelling: str, value: object,
                                                       expected: object) -> None:
    got = coerce_value(value, parse_type(spelling), "c")
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize("spelling", [s for s, _ in ARROW])
def test_coerce__null__stays_null(spelling: str) -> None:
    assert coerce_value(None, parse_type(spelling), "c") is None


REJECTED_VALUES = [
    ("BOOLEAN", 1, "expected a boolean"), ("BOOLEAN", "maybe", "expected a boolean"),
    ("SMALLINT", 32768, "out of range for SMALLINT"), ("SMALLINT", "-32769", "out of range"),
    ("INT", 2**31, "out of range for INT"), ("BIGINT", 2**63, "out of range for BIGINT"),
    ("BIGINT", "-9223372036854775809", "out of range"), ("INT", True, "got a boolean"),
    ("INT", 1.5, "expected an integer"), ("INT", "1.0", "expected an integer"),
    ("INT", "1_000", "expected an integer"), ("INT", "١٢", "expected an integer"),
    ("INT", "", "expected an integer"), ("INT", float("nan"), "expected an integer"),
    ("INT", [1], "expected an integer"), ("BIGINT", "9" * 200, "expected an integer"),
    ("BIGINT", D("1e999999999"), "out of range"), ("TIMESTAMP", D("-1e99"), "out of range"),
    ("FLOAT", 1e39, "out of range for FLOAT"), ("FLOAT", False, "expected a number"),
    ("DOUBLE", float("nan"), "NaN and Infinity"), ("DOUBLE", float("-inf"), "NaN and Infinity"),
    ("DOUBLE", "NaN", "expected a number"), ("DOUBLE", "1e999", "NaN and Infinity"),
    ("DOUBLE", 10**400, "NaN and Infinity"), ("DOUBLE", D("sNaN"), "NaN and Infinity"),
    ("DOUBLE", "abc", "expected a number"),
    ("DECIMAL(5,2)", "1000", "at most 3 digits before the point"),
    ("DECIMAL(5,2)", "999.995", "at most 3 digits before the point"),
    ("DECIMAL(3,3)", 1, "at most 0 digits before the point"),
    ("DECIMAL(10,2)", "1e100", "at most 8 digits"), ("DECIMAL(10,2)", D("NaN"), "NaN"),
    ("DECIMAL(10,2)", float("inf"), "NaN"), ("DECIMAL(10,2)", True, "expected a number"),
    ("DECIMAL(10,2)", "1,5", "expected a number"),
    ("TEXT", b"x", "expected text"), ("TEXT", [1], "expected text"),
    ("TEXT", {"a": 1}, "expected text"), ("TEXT", float("nan"), "NaN"),
    ("TEXT", "a\ud800", "lone UTF-16 surrogate"), ("JSON", ["\udfff"], "lone UTF-16 surrogate"),
    ("JSON", "not json", "invalid JSON text"), ("JSON", "NaN", "may not contain NaN"),
    ("JSON", "[1, Infinity]", "may not contain Infinity"), ("JSON", b"{}", "not a JSON value"),
    ("JSON", [float("nan")], "not a JSON value"), ("JSON", {"a": D("1")}, "not a JSON value"),
    ("JSON", "[" * 100_000, "invalid JSON text"),
    ("FILE", "[1]", "FileRef JSON object"), ("FILE", 3, "FileRef JSON object"),
    ("FILE", "x", "invalid JSON text"),
    ("BYTES", [256], "integers 0..255"), ("BYTES", [True], "integers 0..255"),
    ("BYTES", 5, "expected bytes"),
    ("TIMESTAMP", "yesterday", "ISO-8601"), ("TIMESTAMP", 2**63, "out of range"),
    ("TIMESTAMP", 1.5, "expected an integer"), ("TIMESTAMP", dt.time(1), "expected an integer"),
    ("TIMESTAMP", "2024-01-01T" + "0" * 80, "longer than 64 characters"),
    ("DATE", "2024-13-01", "'YYYY-MM-DD' date"), ("DATE", 2**31, "out of range"),
    ("TIME", "25:00", "time"), ("TIME", 86_400_000_000, "out of range"), ("TIME", -1, "out of range"),
    ("UUID", "not-a-uuid", "expected a UUID"), ("UUID", b"short", "expected a UUID"),
    ("UUID", 5, "expected a UUID"),
    ("EMBEDDING(3)", [1, 2], "expected 3 numbers, got 2"), ("EMBEDDING(2)", "[1]", "got 1"),
    ("EMBEDDING(2)", [1, "2"], "must be numbers"), ("EMBEDDING(2)", [1, True], "must be numbers"),
    ("EMBEDDING(2)", [1, float("nan")], "NaN"), ("EMBEDDING(2)", [1, 1e39], "out of range"),
    ("EMBEDDING(2)", '{"a": 1}', "expected an array"), ("EMBEDDING(2)", "[1,", "invalid JSON"),
    ("EMBEDDING(2)", 3, "expected an array"),
]


@pytest.mark.parametrize(("spelling", "value", "reason"), REJECTED_VALUES)
def test_coerce__rejected_value__invalid_value_names_the_column(spelling: str, value: object,
                                                                reason: str) -> None:
    t = parse_type(spelling)
    with pytest.raises(InvalidValue) as info:
        coerce_value(value, t, "price")
    assert str(info.value).startswith(f"Invalid value for column 'price' ({t.sql()}): ")
    assert reason in str(info.value)


@pytest.mark.parametrize("spelling", ["TEXT", "JSON", "BYTES"])
def test_coerce__value_over_size_limit__rejected(spelling: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The limit is read at call time, so a small one keeps the test fast.
    monkeypatch.setattr(types, "VALUE_SIZE_MAX_BYTES", 16)
    t = parse_type(spelling)
    assert coerce_value('"' + "x" * 14 + '"', t, "c") is not None  # exactly 16 bytes
    with pytest.raises(InvalidValue, match="exceeds the limit of 16 bytes"):
        coerce_value('"' + "x" * 15 + '"', t, "c")


def test_coerce__text_limit_counts_utf8_bytes__not_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(types, "VALUE_SIZE_MAX_BYTES", 16)
    assert coerce_value("é" * 8, KalamType("Text"), "c") == "é" * 8  # 16 bytes
    with pytest.raises(InvalidValue, match="17 bytes"):
        coerce_value("é" * 8 + "x", KalamType("Text"), "c")


def test_coerce__value_size_limit__is_8_mib() -> None:
    assert types.VALUE_SIZE_MAX_BYTES == 8 * 1024 * 1024
    with pytest.raises(InvalidValue, match="exceeds the limit"):
        coerce_value(b"\0" * (types.VALUE_SIZE_MAX_BYTES + 1), KalamType("Bytes"), "c")


# ---------------------------------------------------------------------------------------------
# JSON cell encoding


ENCODED = [
    ("BOOLEAN", [True, False, None], [True, False, None]),
    ("SMALLINT", [-32768, None], [-32768, None]),
    ("INT", [42, None], [42, None]),
    ("BIGINT", [42, -(2**63), None], ["42", "-9223372036854775808", None]),
    ("FLOAT", [1.5, None], [1.5, None]),
    ("DOUBLE", [0.1, -2.0, None], [0.1, -2.0, None]),
    ("DECIMAL(10,2)", [D("200.75"), D("200.7"), D("-0.5"), D("0"), None],
     ["200.75", "200.70", "-0.50", "0.00", None]),
    ("DECIMAL(5,0)", [D("7"), D("-7")], ["7", "-7"]),
    ("TEXT", ["a", "", None], ["a", "", None]),
    ("JSON", ['{"a":1}', None], ['{"a":1}', None]),
    ("FILE", ['{"id":"1"}', None], ['{"id":"1"}', None]),
    ("BYTES", [b"hi", b"", None], [[104, 105], [], None]),
    ("TIMESTAMP", [1_765_741_510_326_539, None], [1_765_741_510_326_539, None]),
    ("DATETIME", [-1, None], [-1, None]),
    ("DATE", [19723, None], [19723, None]),
    ("TIME", [45_296_000_000, None], [45_296_000_000, None]),
    ("UUID", [UUID_BYTES, None], [UUID_TEXT, None]),
    ("EMBEDDING(2)", [[0.5, -1.0], None], [[0.5, -1.0], None]),
]


@pytest.mark.parametrize(("spelling", "stored", "cells"), ENCODED)
def test_column_to_json__each_type__protocol_cell_encoding(spelling: str, stored: list,
                                                           cells: list) -> None:
    t = parse_type(spelling)
    got = column_to_json(pa.array(stored, type=t.arrow_type()), t)
    assert got == cells
    json.dumps(got, allow_nan=False)  # JSON-ready as is


@pytest.mark.parametrize("spelling", [s for s, _ in ARROW])
def test_column_to_json__all_nulls_and_empty__nones(spelling: str) -> None:
    t = parse_type(spelling)
    assert column_to_json(pa.array([None, None], type=t.arrow_type()), t) == [None, None]
    assert column_to_json(pa.array([], type=t.arrow_type()), t) == []


def test_column_to_json__float32__widened_like_the_reference() -> None:
    # The reference sends Float32 as `f as f64`, so 0.1f32 reads 0.10000000149011612.
    t = KalamType("Float")
    assert column_to_json(pa.array([0.1], type=pa.float32()), t) == [0.10000000149011612]


@pytest.mark.parametrize(("spelling", "stored"), [
    ("DOUBLE", [1.0, math.nan]), ("DOUBLE", [math.inf]), ("FLOAT", [-math.inf]),
    ("EMBEDDING(2)", [[1.0, math.nan]]),
])
def test_column_to_json__nan_or_infinity__invalid_value(spelling: str, stored: list) -> None:
    t = parse_type(spelling)
    with pytest.raises(InvalidValue, match="NaN and Infinity"):
        column_to_json(pa.array(stored, type=t.arrow_type()), t)


ROUND_TRIP = [
    ("BOOLEAN", "true", True), ("SMALLINT", "-7", -7), ("BIGINT", 9007199254740993, "9007199254740993"),
    ("DOUBLE", "2.5", 2.5), ("DECIMAL(18,4)", 3.14159, "3.1416"), ("TEXT", 12, "12"),
    ("JSON", {"b": [1, 2]}, '{"b":[1,2]}'), ("BYTES", "hi", [104, 105]),
    ("TIMESTAMP", "2024-01-01T00:00:00.000001Z", 1_704_067_200_000_001),
    ("DATETIME", "1970-01-01T00:00:00+00:00", 0), ("DATE", "1970-01-10", 9),
    ("TIME", "00:00:00.000042", 42), ("UUID", UUID_TEXT.upper(), UUID_TEXT),
    ("EMBEDDING(2)", "[0.25, 4]", [0.25, 4.0]), ("FILE", {"id": "9"}, '{"id":"9"}'),
]


@pytest.mark.parametrize(("spelling", "value", "cell"), ROUND_TRIP)
def test_round_trip__coerce_then_arrow_then_json__protocol_cell(spelling: str, value: object,
                                                                 cell: object) -> None:
    t = parse_type(spelling)
    array = pa.array([coerce_value(value, t, "c"), None], type=t.arrow_type())
    assert column_to_json(array, t) == [cell, None]


COMPUTED = [
    (pa.array([1, None], type=pa.int64()), ["1", None]),  # SELECT 1 is a BigInt string
    (pa.array([2**64 - 1], type=pa.uint64()), ["18446744073709551615"]),
    (pa.array([-3], type=pa.int8()), [-3]),
    (pa.array([1_500], type=pa.timestamp("ns", tz="+00:00")), [1]),
    (pa.array([1_700_000_000_123], type=pa.timestamp("ms")), [1_700_000_000_123_000]),
    (pa.array([86_400_000 * 3], type=pa.date64()), [3]),
    (pa.array([1_000], type=pa.time32("ms")), [1_000_000]),
    (pa.array([1.5], type=pa.float16()), [1.5]),
    (pa.array([b"\x00\x01"], type=pa.binary(2)), [[0, 1]]),
    (pa.array([[1, 2], None], type=pa.list_(pa.int32())), ["[1,2]", None]),
    (pa.array([{"a": 1}], type=pa.struct([("a", pa.int32())])), ['{"a":1}']),
    (pa.array([None, None], type=pa.null()), [None, None]),
    (pa.array(["x", "y", "x"]).dictionary_encode(), ["x", "y", "x"]),
    (pa.array([5, None], type=pa.duration("s")), ["5", None]),
]


@pytest.mark.parametrize(("array", "cells"), COMPUTED, ids=lambda v: str(getattr(v, "type", "")))
def test_column_to_json__computed_column__encoded_by_its_mapped_type(array: pa.Array,
                                                                     cells: list) -> None:
    assert column_to_json(array, type_from_arrow(array.type)) == cells


def test_column_to_json__chunked_array__cells_of_all_chunks_in_order() -> None:
    chunked = pa.chunked_array([[1, 2], [], [None, 3]], type=pa.int64())
    assert column_to_json(chunked, KalamType("BigInt")) == ["1", "2", None, "3"]


def test_table_to_json_rows__mixed_columns__rows_in_column_order() -> None:
    types_ = [KalamType("BigInt"), KalamType("Text"), KalamType("Decimal", precision=10, scale=2),
              KalamType("Boolean")]
    table = pa.table({
        "id": pa.array([1, 2], type=pa.int64()), "title": ["a", None],
        "price": pa.array([D("1.5"), None], type=pa.decimal128(10, 2)),
        "_deleted": [False, False],
    })
    assert table_to_json_rows(table, types_) == [["1", "a", "1.50", False], ["2", None, None, False]]


def test_table_to_json_rows__no_columns__one_empty_row_per_row() -> None:
    table = pa.table({"x": [1, 2, 3]}).drop_columns(["x"])
    assert table_to_json_rows(table, []) == [[], [], []]
    assert table_to_json_rows(pa.Table.from_batches([], schema=pa.schema([])), []) == []


@pytest.mark.parametrize(("arrow", "stored", "cells"), [
    (pa.binary(), [b"a", None, b"", b"bc", None], [[98, 99], None]),
    (pa.large_binary(), [b"a", None, b"", b"bc", None], [[98, 99], None]),
    (pa.binary(16), [UUID_BYTES, None, bytes(16), UUID_BYTES, None], [UUID_TEXT, None]),
])
def test_column_to_json__sliced_array__only_the_slice_is_encoded(arrow: pa.DataType, stored: list,
                                                                  cells: list) -> None:
    # Results are often slices (LIMIT/OFFSET) whose buffers start before the first row.
    array = pa.array(stored, type=arrow).slice(3)
    assert column_to_json(array, type_from_arrow(arrow)) == cells


def test_column_to_json__bytes_all_empty__empty_lists() -> None:
    # An all-empty Binary array may have no data buffer at all.
    assert column_to_json(pa.array([b"", b""]), KalamType("Bytes")) == [[], []]
