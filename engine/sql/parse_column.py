"""Column definitions for CREATE TABLE and ALTER TABLE (PROTOCOL.md §3.3, §3.4, §3.6).

Written on our own tokens rather than sqlglot's parser, which rejects KalamDB's ``FILE`` and
``EMBEDDING(n)`` types. Grammar::

    column   := name type option*
    type     := word+ ['(' param (',' param)* ')'] ... ['[' ']']     (e.g. DOUBLE PRECISION,
                DECIMAL(10, 2), TIMESTAMP(3) WITH TIME ZONE, INT[])
    option   := NOT NULL | NULL | DEFAULT default | PRIMARY KEY | AUTO_INCREMENT
              | AUTO INCREMENT | GENERATED [ALWAYS | BY DEFAULT] AS IDENTITY ['(' ... ')']
              | COMMENT 'text'
    default  := literal | NOW() | CURRENT_TIMESTAMP[()] | SNOWFLAKE_ID() | UUID_V7() | ULID()
              | CURRENT_USER[()]
    literal  := ['-'|'+'] number | 'string' | TRUE | FALSE | NULL

Each option may appear once. UNIQUE, REFERENCES, CHECK, COLLATE and CONSTRAINT on a column are
refused. The SERIAL types set ``auto_id`` like AUTO_INCREMENT; ``auto_id`` together with a
DEFAULT is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from engine.sql.cursor import Cursor
from engine.sql.lexer import TokenKind
from engine.sql.names import definition_problem
from engine.sql.statements import ColumnDef, ColumnDefault

# Words that end a column's type and start its options.
OPTION_WORDS = frozenset({
    "NOT", "NULL", "DEFAULT", "PRIMARY", "AUTO_INCREMENT", "AUTO", "GENERATED", "COMMENT",
    "UNIQUE", "REFERENCES", "CHECK", "COLLATE", "CONSTRAINT", "KEY",
})
UNSUPPORTED_OPTIONS = ("UNIQUE", "REFERENCES", "CHECK", "COLLATE", "CONSTRAINT")
SERIAL_TYPES = frozenset({"SERIAL", "BIGSERIAL", "SMALLSERIAL"})
# Types whose parameters are values or nested types, not lengths: all are stored as TEXT.
CONTAINER_TYPES = frozenset({"ENUM", "SET", "STRUCT", "ARRAY"})
# Recognised DEFAULT functions (§3.3): spelling -> canonical name (CURRENT_TIMESTAMP is NOW);
# and the forms that may be written without parentheses.
DEFAULT_FUNCTIONS = {
    "NOW": "NOW", "CURRENT_TIMESTAMP": "NOW", "SNOWFLAKE_ID": "SNOWFLAKE_ID",
    "UUID_V7": "UUID_V7", "ULID": "ULID", "CURRENT_USER": "CURRENT_USER",
}
BARE_DEFAULT_FUNCTIONS = frozenset({"CURRENT_TIMESTAMP", "CURRENT_USER"})


@dataclass
class ColumnBuilder:
    """A column while its options are read; ``build()`` gives the frozen ``ColumnDef``."""
    name: str
    type_text: str
    name_start: int
    name_end: int
    declared_null: bool | None = None
    default: ColumnDefault | None = None
    primary_key: bool = False
    auto_id: bool = False
    comment: str | None = None
    seen: set[str] = dataclasses.field(default_factory=set)

    def build(self, cur: Cursor) -> ColumnDef:
        """Apply the cross-option rules and freeze.

        Raises:
            InvalidSql: a NULL primary key, or an auto id with a DEFAULT.
        """
        if self.primary_key and self.declared_null:
            raise cur.error_at(f"Primary key column '{self.name}' cannot be NULL",
                                self.name_start, self.name_end)
        if self.auto_id and self.default is not None:
            raise cur.error_at(
                f"Column '{self.name}' cannot have both a DEFAULT and an auto-generated id",
                self.name_start, self.name_end)
        nullable = not self.primary_key and self.declared_null is not False
        return ColumnDef(self.name, self.type_text, nullable, self.default, self.primary_key,
                         self.auto_id, self.comment)


def parse_column(cur: Cursor) -> ColumnBuilder:
    """Read one column definition up to the next top-level ``,`` or ``)`` (not consumed).

    Raises:
        InvalidSql: a bad name (§3.3 column rules), a missing type, an unsupported or repeated
            option, or an unsupported DEFAULT expression.
    """
    token = cur.peek()
    name = cur.checked_name("Column", definition_problem)
    assert token is not None
    column = ColumnBuilder(name, parse_type(cur, name), token.start, token.end)
    column.auto_id = column.type_text in SERIAL_TYPES
    while not cur.at_end() and not cur.looking_at(",") and not cur.looking_at(")"):
        _parse_column_option(cur, column)
    return column


def parse_type(cur: Cursor, column: str) -> str:
    """The type text of ``column``: upper-cased words, parameters as ``(a,b)``, ``[]`` kept."""
    words: list[str] = []
    while True:
        token = cur.peek()
        if token is None or token.kind is not TokenKind.WORD or token.upper in OPTION_WORDS:
            break
        cur.index += 1
        word = token.upper
        if not words and word in CONTAINER_TYPES and (cur.looking_at("(") or cur.looking_at("<")):
            return word + _container_parameters(cur, column)  # stored as TEXT (§3.5)
        if cur.looking_at("("):
            word += _type_parameters(cur, column)
        words.append(word)
    if not words:
        raise cur.error(f"Expected a data type for column '{column}'")
    if cur.accept("[", "]"):
        words[-1] += "[]"
    return " ".join(words)


def _container_parameters(cur: Cursor, column: str) -> str:
    """The balanced ``(...)`` or ``<...>`` after ENUM/SET/STRUCT/ARRAY, kept verbatim."""
    opening = cur.peek()
    assert opening is not None
    closing = {"(": ")", "<": ">"}[opening.value]
    depth = 0
    while (token := cur.peek()) is not None:
        cur.index += 1
        if token.kind is TokenKind.PUNCT and token.value == opening.value:
            depth += 1
        elif token.kind is TokenKind.PUNCT and token.value == closing:
            depth -= 1
            if depth == 0:
                return cur.sql[opening.start:token.end]
    raise cur.error(f"Unbalanced type parameters for column '{column}'")


def _type_parameters(cur: Cursor, column: str) -> str:
    cur.expect("(")
    parameters: list[str] = []
    while True:
        token = cur.peek()
        if token is None or token.kind not in (TokenKind.NUMBER, TokenKind.WORD):
            raise cur.error(f"Invalid type parameters for column '{column}'")
        cur.index += 1
        parameters.append(token.upper or token.value)
        if not cur.accept(","):
            break
    cur.expect(")")
    return "(" + ",".join(parameters) + ")"


def _parse_column_option(cur: Cursor, column: ColumnBuilder) -> None:
    for words, (clause, apply) in _COLUMN_OPTIONS.items():
        if cur.looking_at(*words):
            if clause in column.seen:
                raise cur.error(f"{clause} is given twice for column '{column.name}'")
            column.seen.add(clause)
            cur.accept(*words)
            apply(cur, column)
            return
    token = cur.peek()
    assert token is not None
    if token.upper in UNSUPPORTED_OPTIONS:
        raise cur.error(f"{token.upper} is not supported (column '{column.name}')")
    raise cur.error(f"Unexpected '{cur.sql[token.start:token.end]}' in the definition of column "
                    f"'{column.name}'")


def _not_null(cur: Cursor, column: ColumnBuilder) -> None:
    column.declared_null = False


def _null(cur: Cursor, column: ColumnBuilder) -> None:
    column.declared_null = True


def _default(cur: Cursor, column: ColumnBuilder) -> None:
    column.default = parse_default(cur, column.name)


def _primary_key(cur: Cursor, column: ColumnBuilder) -> None:
    column.primary_key = True


def _auto_increment(cur: Cursor, column: ColumnBuilder) -> None:
    column.auto_id = True


def _identity(cur: Cursor, column: ColumnBuilder) -> None:
    if not cur.accept("ALWAYS"):
        cur.accept("BY", "DEFAULT")
    cur.expect("AS", "IDENTITY")
    if cur.looking_at("("):
        cur.index += 1
        cur.balanced_end(lambda c: c.looking_at(")"))
        cur.expect(")")
    column.auto_id = True


def _comment(cur: Cursor, column: ColumnBuilder) -> None:
    column.comment = cur.string("a column comment")


# Column option table: leading words -> (clause name for the once-only check, reader).
# Longer word sequences come first where they share a first word.
_COLUMN_OPTIONS: dict[tuple[str, ...], tuple[str, Callable[[Cursor, ColumnBuilder], None]]] = {
    ("NOT", "NULL"): ("NULL/NOT NULL", _not_null),
    ("NULL",): ("NULL/NOT NULL", _null),
    ("DEFAULT",): ("DEFAULT", _default),
    ("PRIMARY", "KEY"): ("PRIMARY KEY", _primary_key),
    ("AUTO_INCREMENT",): ("AUTO_INCREMENT", _auto_increment),
    ("AUTO", "INCREMENT"): ("AUTO_INCREMENT", _auto_increment),
    ("GENERATED",): ("GENERATED AS IDENTITY", _identity),
    ("COMMENT",): ("COMMENT", _comment),
}


def parse_default(cur: Cursor, column: str) -> ColumnDefault:
    """A DEFAULT value: a literal or one of the recognised functions (module docstring).

    Raises:
        InvalidSql: "Unsupported DEFAULT expression '<text>' for column '<c>'" for anything else.
    """
    start_index = cur.index
    start = cur.peek()
    if start is None:
        raise cur.error(f"Expected a DEFAULT value for column '{column}'")
    default = _default_value(cur)
    ends_here = cur.at_end() or cur.looking_at(",") or cur.looking_at(")") \
        or cur.peek().upper in OPTION_WORDS
    if default is None or not ends_here:
        cur.index = start_index
        if not cur.looking_at("("):
            cur.index += 1  # the first token belongs to the expression even if it is NULL etc.
        end = cur.balanced_end(lambda c: c.looking_at(",") or c.looking_at(")")
                               or c.peek().upper in OPTION_WORDS)
        text = cur.sql[start.start:end]
        raise cur.error_at(f"Unsupported DEFAULT expression '{text}' for column "
                            f"'{column}'", start.start, end)
    return default


def _default_value(cur: Cursor) -> ColumnDefault | None:
    token = cur.next("a DEFAULT value")
    if token.kind is TokenKind.STRING:
        return ColumnDefault("literal", cur.sql[token.start:token.end], value=token.value)
    if token.upper in ("-", "+") and cur.peek() is not None \
            and cur.peek().kind is TokenKind.NUMBER:
        number = cur.next("a number")
        text = cur.sql[token.start:number.end]
        return ColumnDefault("literal", text, value=_number(token.upper + number.value))
    if token.kind is TokenKind.NUMBER:
        return ColumnDefault("literal", token.value, value=_number(token.value))
    if token.kind is not TokenKind.WORD:
        return None
    word = token.upper
    if cur.looking_at("(", ")") and word in DEFAULT_FUNCTIONS:
        cur.accept("(", ")")
        return ColumnDefault("function", cur.sql[token.start:cur.peek(-1).end],
                             function=DEFAULT_FUNCTIONS[word])
    if cur.looking_at("("):
        return None
    literals = {"TRUE": True, "FALSE": False, "NULL": None}
    if word in literals:
        return ColumnDefault("literal", token.value, value=literals[word])
    if word in BARE_DEFAULT_FUNCTIONS:
        return ColumnDefault("function", token.value, function=DEFAULT_FUNCTIONS[word])
    return None


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)
