"""A route's WHERE condition compiled once into a vectorized predicate over Arrow batches.

``compile_where(text, table)`` parses the condition with sqlglot (PostgreSQL dialect) and
returns ``predicate(batch) -> list[int]``: the indexes of the rows for which the condition
is TRUE (NULL counts as not matching, as in SQL). Evaluation uses ``pyarrow.compute`` on
whole columns — never a query or a Python call per row.

Supported: column references (by the table's column names, or ``_seq``/``_deleted``),
number/string/boolean/NULL literals, ``= <> != < <= > >=``, ``AND OR NOT``, ``IS [NOT]
NULL``, ``[NOT] IN (literals)``, ``[NOT] BETWEEN``, ``[NOT] LIKE/ILIKE``, ``+ - * /``, unary
minus and parentheses. A literal compared with a column is converted to the column's type
first (``created_at > '2026-01-01'`` works). Anything else raises ``InvalidSql`` naming it;
so do an unknown column and a type mismatch (``msg > id``: the predicate is tried on an empty
batch of the table's schema when compiled).

A column missing from a batch (an event written before the column was added, or a STREAM
delete carrying only ``_seq``) reads as NULL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from ..catalog import DELETED_COLUMN, SEQ_COLUMN, TableDef
from ..errors import EngineError, InvalidSql
from ..partition import storage_schema
from ..types import KalamType, coerce_value

Value = pa.Array | pa.Scalar
Node = Callable[[pa.RecordBatch], Value]
Predicate = Callable[[pa.RecordBatch], list[int]]

_COMPARE = {exp.EQ: pc.equal, exp.NEQ: pc.not_equal, exp.GT: pc.greater,
            exp.GTE: pc.greater_equal, exp.LT: pc.less, exp.LTE: pc.less_equal}
_ARITH = {exp.Add: pc.add, exp.Sub: pc.subtract, exp.Mul: pc.multiply, exp.Div: pc.divide}
_SYSTEM = {SEQ_COLUMN: (KalamType("BigInt"), pa.int64()),
           DELETED_COLUMN: (KalamType("Boolean"), pa.bool_())}


def compile_where(text: str, table: TableDef) -> Predicate:
    """Raises ``InvalidSql`` for a condition that does not parse or is not supported."""
    try:
        tree = sqlglot.parse_one(text, read="postgres", into=exp.Condition)
    except (ParseError, TokenError) as exc:
        raise InvalidSql(f"Invalid WHERE condition '{text}'") from exc
    node = _Compiler(table).compile(tree)
    empty = pa.RecordBatch.from_pylist([], schema=storage_schema(table))
    try:  # kernels dispatch on types even for no rows: a type error shows up now
        _check_boolean(node(empty), text)
    except pa.ArrowException as exc:
        raise InvalidSql(f"Invalid WHERE condition '{text}': {exc}") from exc

    def predicate(batch: pa.RecordBatch) -> list[int]:
        result = node(batch)
        _check_boolean(result, text)
        if isinstance(result, pa.Scalar):
            return list(range(batch.num_rows)) if result.as_py() is True else []
        return pc.indices_nonzero(pc.fill_null(result, False)).to_pylist()

    return predicate


def _check_boolean(result: Value, text: str) -> None:
    if not (pa.types.is_boolean(result.type) or pa.types.is_null(result.type)):
        raise InvalidSql(f"WHERE condition '{text}' is not a boolean expression")


class _Compiler:
    def __init__(self, table: TableDef) -> None:
        self.table = table

    def compile(self, node: exp.Expression) -> Node:
        if isinstance(node, exp.Paren):
            return self.compile(node.this)
        if isinstance(node, exp.Column):
            return self._column(node)
        if isinstance(node, exp.Literal | exp.Boolean | exp.Null | exp.Neg) and \
                _is_constant(node):
            value = pa.scalar(_literal(node))
            return lambda batch: value
        for kinds, build in _BUILDERS:
            if isinstance(node, kinds):
                compiled = build(self, node)
                if node.args.get("negate"):  # sqlglot's form of IS NOT, NOT LIKE, …
                    return lambda batch: pc.invert(compiled(batch))
                return compiled
        raise InvalidSql(f"Unsupported expression in a topic route WHERE: {node.sql()}")

    def _column_info(self, node: exp.Column) -> tuple[str, KalamType, pa.DataType]:
        if node.table:
            raise InvalidSql(f"Qualified column '{node.sql()}' in a topic route WHERE; use "
                             "the column name alone")
        name = node.name
        if name.lower() in _SYSTEM:
            kind, arrow = _SYSTEM[name.lower()]
            return name.lower(), kind, arrow
        column = self.table.column(name)
        if column is None:
            raise InvalidSql(f"Column '{name}' does not exist in table "
                             f"'{self.table.qualified_name}'")
        return column.storage_name, column.type, column.type.arrow_type()

    def _column(self, node: exp.Column) -> Node:
        field, _, arrow = self._column_info(node)

        def read(batch: pa.RecordBatch) -> Value:
            index = batch.schema.get_field_index(field)
            if index < 0:
                return pa.nulls(batch.num_rows, arrow)
            return batch.column(index)

        return read

    def _operand(self, node: exp.Expression, other: exp.Expression) -> Node:
        """``node``; a constant compared with a column takes the column's type."""
        if _is_constant(node) and isinstance(_unparen(other), exp.Column):
            _, kind, arrow = self._column_info(_unparen(other))
            value = _typed(_literal(node), kind, arrow)
            return lambda batch: value
        return self.compile(node)

    def _compare(self, node: exp.Binary) -> Node:
        fn = _COMPARE[type(node)]
        left = self._operand(node.this, node.expression)
        right = self._operand(node.expression, node.this)
        return lambda batch: fn(left(batch), right(batch))

    def _logic(self, node: exp.Binary) -> Node:
        fn = pc.and_kleene if isinstance(node, exp.And) else pc.or_kleene
        left, right = self.compile(node.this), self.compile(node.expression)
        return lambda batch: fn(left(batch), right(batch))

    def _not(self, node: exp.Not) -> Node:
        inner = self.compile(node.this)
        return lambda batch: pc.invert(inner(batch))

    def _is(self, node: exp.Is) -> Node:
        if not isinstance(node.expression, exp.Null):
            raise InvalidSql(f"Unsupported IS test in a topic route WHERE: {node.sql()}")
        inner = self.compile(node.this)
        return lambda batch: pc.is_null(inner(batch))

    def _in(self, node: exp.In) -> Node:
        items = node.expressions
        if not items or not all(_is_constant(item) for item in items):
            raise InvalidSql(f"IN needs a list of constants in a topic route WHERE: "
                             f"{node.sql()}")
        target = self.compile(node.this)
        if isinstance(_unparen(node.this), exp.Column):
            _, kind, arrow = self._column_info(_unparen(node.this))
            values = pa.array([_typed(_literal(i), kind, arrow).as_py() for i in items], arrow)
        else:
            values = pa.array([_literal(i) for i in items])
        return lambda batch: pc.is_in(target(batch), value_set=values)

    def _between(self, node: exp.Between) -> Node:
        target = self.compile(node.this)
        low = self._operand(node.args["low"], node.this)
        high = self._operand(node.args["high"], node.this)
        return lambda batch: pc.and_kleene(pc.greater_equal(target(batch), low(batch)),
                                           pc.less_equal(target(batch), high(batch)))

    def _like(self, node: exp.Like | exp.ILike) -> Node:
        if not isinstance(node.expression, exp.Literal) or not node.expression.is_string:
            raise InvalidSql(f"LIKE needs a string pattern in a topic route WHERE: "
                             f"{node.sql()}")
        target, pattern = self.compile(node.this), node.expression.this
        ignore_case = isinstance(node, exp.ILike)
        return lambda batch: pc.match_like(target(batch), pattern, ignore_case=ignore_case)

    def _arith(self, node: exp.Binary) -> Node:
        fn = _ARITH[type(node)]
        left, right = self.compile(node.this), self.compile(node.expression)
        return lambda batch: fn(left(batch), right(batch))

    def _neg(self, node: exp.Neg) -> Node:
        inner = self.compile(node.this)
        return lambda batch: pc.negate(inner(batch))


_BUILDERS: tuple[tuple[type | tuple[type, ...], Callable[[_Compiler, Any], Node]], ...] = (
    (tuple(_COMPARE), _Compiler._compare),
    ((exp.And, exp.Or), _Compiler._logic),
    (exp.Not, _Compiler._not),
    (exp.Is, _Compiler._is),
    (exp.In, _Compiler._in),
    (exp.Between, _Compiler._between),
    ((exp.Like, exp.ILike), _Compiler._like),
    (tuple(_ARITH), _Compiler._arith),
    (exp.Neg, _Compiler._neg),
)


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _is_constant(node: exp.Expression) -> bool:
    node = _unparen(node)
    if isinstance(node, exp.Neg):
        return isinstance(_unparen(node.this), exp.Literal) and not _unparen(node.this).is_string
    return isinstance(node, exp.Literal | exp.Boolean | exp.Null)


def _literal(node: exp.Expression) -> Any:
    node = _unparen(node)
    if isinstance(node, exp.Neg):
        return -_literal(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if node.is_string:
        return node.this
    text = node.this
    try:
        return int(text)
    except ValueError:
        return float(text)


def _typed(value: Any, kind: KalamType, arrow: pa.DataType) -> pa.Scalar:
    try:
        return pa.scalar(coerce_value(value, kind, "literal"), arrow)
    except (EngineError, pa.ArrowException, TypeError, ValueError) as exc:
        raise InvalidSql(f"Cannot compare a {kind.sql()} column with {value!r}: {exc}") \
            from exc
