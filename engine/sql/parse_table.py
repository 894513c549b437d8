"""Table statements (PROTOCOL.md §3.3, §3.4): CREATE / ALTER / DROP TABLE, DESCRIBE TABLE,
SHOW TABLES, SHOW STATS FOR TABLE.

Each ``parse_*`` function takes a cursor positioned just after the statement's leading keywords
(the classifier's table consumed them) and returns a statement from ``statements.py``, or raises
``InvalidSql(at_classify=True)`` located at the offending token.

Division of labour with the executor: this module checks syntax, name rules, option *keys*,
the table-type conflict, the FLUSH_POLICY syntax, the single-column PRIMARY KEY and that
non-STREAM tables have one. Option *values* (STORAGE_ID exists, TTL_SECONDS only for and
required by STREAM, ACCESS_LEVEL values, ...) and everything that needs the catalog are the
executor's. ALTER TABLE takes exactly one action per statement.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.sql.cursor import Cursor
from engine.sql.lexer import Token, TokenKind
from engine.sql.names import SYSTEM_COLUMN_NAMES, definition_problem, reference_problem
from engine.sql.parse_column import ColumnBuilder, parse_column, parse_default, parse_type
from engine.sql.statements import (
    TABLE_TYPES,
    AddColumn,
    AlterTable,
    AlterTableAction,
    ColumnDef,
    CreateTable,
    DescribeTable,
    DropColumn,
    DropTable,
    FlushPolicy,
    ModifyColumn,
    RenameColumn,
    SetColumnDefault,
    SetColumnNullable,
    SetTableProperties,
    ShowTables,
    ShowTableStats,
)

TABLE_OPTIONS = frozenset({
    "TYPE", "STORAGE_ID", "USE_USER_STORAGE", "FLUSH_POLICY", "TTL_SECONDS", "ACCESS_LEVEL",
    "DELETED_RETENTION_HOURS",
})
TABLE_PROPERTIES = frozenset({"ACCESS_LEVEL"})

OptionList = list[tuple[str, str | int, Token]]


# --- CREATE TABLE --------------------------------------------------------------------------


def parse_create_table(cur: Cursor, table_type: str | None = None) -> CreateTable:
    """``[IF NOT EXISTS] [ns.]name ( elements ) [USING x] [WITH (K = v, ...)]``.

    ``table_type`` is the prefix keyword's type (CREATE USER TABLE) or None.
    """
    if_not_exists = cur.accept("IF", "NOT", "EXISTS")
    namespace, name = cur.qualified_name("Table", definition_problem)
    if cur.looking_at("AS"):
        raise cur.error("CREATE TABLE ... AS SELECT is not supported")
    columns, primary_key = _table_elements(cur)
    using, options = _table_tail(cur)
    table_type = _resolve_table_type(cur, table_type, options)
    flush_policy = None
    for key, value, token in options:
        if key == "FLUSH_POLICY":
            flush_policy = _flush_policy(cur, value, token)
    if primary_key is None and table_type != "STREAM":
        raise cur.error("USER and SHARED tables require a single-column PRIMARY KEY")
    return CreateTable(namespace, name, table_type, columns, primary_key, if_not_exists,
                       {key: value for key, value, _ in options}, flush_policy, using)


def _table_elements(cur: Cursor) -> tuple[tuple[ColumnDef, ...], str | None]:
    cur.expect("(")
    builders: list[ColumnBuilder] = []
    constraint_keys: list[tuple[str, Token]] = []
    while True:
        if cur.accept("CONSTRAINT"):
            cur.identifier("a constraint name")
            if not cur.looking_at("PRIMARY", "KEY"):
                raise cur.error("Only PRIMARY KEY table constraints are supported")
        if cur.accept("PRIMARY", "KEY"):
            constraint_keys.append(_primary_key_constraint(cur))
        elif cur.looking_at("UNIQUE") or cur.looking_at("FOREIGN") or cur.looking_at("CHECK"):
            raise cur.error("Only PRIMARY KEY table constraints are supported")
        else:
            builders.append(parse_column(cur))
        if not cur.accept(","):
            break
    cur.expect(")")
    return _finish_columns(cur, builders, constraint_keys)


def _primary_key_constraint(cur: Cursor) -> tuple[str, Token]:
    cur.expect("(")
    token = cur.peek()
    names = [cur.identifier("a primary key column")]
    while cur.accept(","):
        names.append(cur.identifier("a primary key column"))
    if len(names) > 1:
        assert token is not None
        raise cur.error_at("Composite PRIMARY KEYs are not supported yet",
                            token.start, cur.peek(-1).end)
    cur.expect(")")
    assert token is not None
    return names[0], token


def _finish_columns(cur: Cursor, builders: list[ColumnBuilder],
                    constraint_keys: list[tuple[str, Token]],
                    ) -> tuple[tuple[ColumnDef, ...], str | None]:
    seen: set[str] = set()
    for builder in builders:
        if builder.name.lower() in seen:
            raise cur.error_at(f"Duplicate column name '{builder.name}'",
                                builder.name_start, builder.name_end)
        seen.add(builder.name.lower())
    keyed = [builder for builder in builders if builder.primary_key]
    for key, token in constraint_keys:
        matches = [builder for builder in builders if builder.name.lower() == key.lower()]
        if not matches:
            raise cur.error_at(f"PRIMARY KEY column '{key}' is not defined",
                                token.start, token.end)
        if matches[0] not in keyed:
            matches[0].primary_key = True
            keyed.append(matches[0])
    if len(keyed) > 1 or len(constraint_keys) > 1:
        raise cur.error("Multiple PRIMARY KEY definitions found")
    columns = tuple(builder.build(cur) for builder in builders)
    return columns, (keyed[0].name if keyed else None)


def _table_tail(cur: Cursor) -> tuple[str | None, OptionList]:
    using: str | None = None
    options: OptionList | None = None
    while not cur.at_end():
        if using is None and cur.accept("USING"):
            using = cur.identifier("a table access method")
        elif options is None and cur.accept("WITH"):
            options = parse_options(cur, TABLE_OPTIONS, "table option")
        else:
            raise cur.error(f"Unexpected '{cur.sql[cur.peek().start:cur.peek().end]}' "
                            "after the column list")
    return using, options or []


def parse_options(cur: Cursor, allowed: frozenset[str], what: str) -> OptionList:
    """``( KEY = value [, ...] )``: keys upper-cased and checked against ``allowed``; values
    are str (quoted, or a bare word as written) or int (a bare integer)."""
    cur.expect("(")
    options: OptionList = []
    while True:
        key_token = cur.peek()
        key = cur.text_value(f"a {what} name").upper()
        assert key_token is not None
        if key not in allowed:
            raise cur.error_at(f"Unknown {what} '{key}'", key_token.start, key_token.end)
        if any(key == seen for seen, _, _ in options):
            raise cur.error_at(f"Duplicate {what} '{key}'", key_token.start, key_token.end)
        cur.expect("=")
        value_token = cur.peek()
        options.append((key, option_value(cur, f"a value for {key}"), value_token))
        if not cur.accept(","):
            break
    cur.expect(")")
    return options


def option_value(cur: Cursor, what: str) -> str | int:
    """An option value: a quoted string, a bare word, or a (signed) integer."""
    negative = cur.accept("-")
    token = cur.peek()
    if token is not None and token.kind is TokenKind.NUMBER and token.value.isdigit():
        cur.index += 1
        return -int(token.value) if negative else int(token.value)
    if negative:
        raise cur.error(f"Expected {what}")
    if token is not None and token.kind is TokenKind.NUMBER:
        cur.index += 1
        return token.value
    return cur.text_value(what)


def _resolve_table_type(cur: Cursor, prefix_type: str | None, options: OptionList) -> str | None:
    for key, value, token in options:
        if key != "TYPE":
            continue
        requested = str(value).upper()
        if requested not in TABLE_TYPES:
            raise cur.error_at(f"Invalid TYPE option '{value}'. Supported: USER, "
                                "SHARED, STREAM", token.start, token.end)
        if prefix_type is not None and requested != prefix_type:
            raise cur.error_at("Conflicting table type definitions: CREATE "
                                f"{prefix_type} TABLE vs TYPE '{requested}'", token.start, token.end)
        return requested
    return prefix_type


def _flush_policy(cur: Cursor, value: str | int, token: Token) -> FlushPolicy:
    text = str(value)
    parts: dict[str, int] = {}
    for part in text.split(","):
        key, colon, number = part.partition(":")
        key, number = key.strip().lower(), number.strip()
        if not colon or key not in ("rows", "interval") or key in parts or not number.isdigit():
            raise cur.error_at(f"Invalid FLUSH_POLICY '{text}'. Expected 'rows:N', "
                                "'interval:S' or 'rows:N,interval:S'", token.start, token.end)
        parts[key] = int(number)
    if not any(parts.values()):
        raise cur.error_at("FLUSH_POLICY must specify 'rows' or 'interval' > 0",
                            token.start, token.end)
    return FlushPolicy(parts.get("rows") or None, parts.get("interval") or None)


# --- ALTER TABLE ---------------------------------------------------------------------------


def parse_alter_table(cur: Cursor, table_type: str | None = None) -> AlterTable:
    """``[ns.]t <action>`` with exactly one action (see ``_ALTER_ACTIONS``)."""
    namespace, name = cur.qualified_name("Table")
    token = cur.peek()
    action = _ALTER_ACTIONS.get(token.upper if token is not None else "")
    if action is None:
        raise cur.error("Expected ADD, DROP, MODIFY, ALTER, RENAME or SET TBLPROPERTIES")
    cur.index += 1
    result = action(cur)
    if cur.looking_at(","):
        raise cur.error("ALTER TABLE supports one action per statement")
    cur.expect_end()
    return AlterTable(namespace, name, table_type, result)


def _existing_column(cur: Cursor) -> str:
    token = cur.peek()
    name = cur.checked_name("Column", reference_problem)
    if name.lower() in SYSTEM_COLUMN_NAMES:
        assert token is not None
        raise cur.error_at(f"System column '{name}' cannot be altered",
                            token.start, token.end)
    return name


def _add_column(cur: Cursor) -> AlterTableAction:
    cur.accept("COLUMN")
    column = parse_column(cur)
    if column.primary_key:
        raise cur.error_at("ALTER TABLE ADD COLUMN cannot add a PRIMARY KEY",
                            column.name_start, column.name_end)
    return AddColumn(column.build(cur))


def _drop_column(cur: Cursor) -> AlterTableAction:
    cur.accept("COLUMN")
    if_exists = cur.accept("IF", "EXISTS")
    return DropColumn(_existing_column(cur), if_exists)


def _modify_column(cur: Cursor) -> AlterTableAction:
    cur.accept("COLUMN")
    name = _existing_column(cur)
    type_text = parse_type(cur, name)
    nullable = False if cur.accept("NOT", "NULL") else (True if cur.accept("NULL") else None)
    return ModifyColumn(name, type_text, nullable)


def _alter_column(cur: Cursor) -> AlterTableAction:
    cur.accept("COLUMN")
    name = _existing_column(cur)
    if cur.accept("SET", "NOT", "NULL"):
        return SetColumnNullable(name, False)
    if cur.accept("DROP", "NOT", "NULL"):
        return SetColumnNullable(name, True)
    if cur.accept("SET", "DEFAULT"):
        return SetColumnDefault(name, parse_default(cur, name))
    if cur.accept("DROP", "DEFAULT"):
        return SetColumnDefault(name, None)
    if cur.accept("TYPE") or cur.accept("SET", "DATA", "TYPE"):
        return ModifyColumn(name, parse_type(cur, name))
    raise cur.error("Expected SET NOT NULL, DROP NOT NULL, SET DEFAULT, DROP DEFAULT or TYPE")


def _rename_column(cur: Cursor) -> AlterTableAction:
    if cur.looking_at("TO"):
        raise cur.error("Renaming a table is not supported")
    cur.accept("COLUMN")
    old_name = _existing_column(cur)
    cur.expect("TO")
    return RenameColumn(old_name, cur.checked_name("Column", definition_problem))


def _set_properties(cur: Cursor) -> AlterTableAction:
    cur.expect("TBLPROPERTIES")
    options = parse_options(cur, TABLE_PROPERTIES, "table property")
    return SetTableProperties({key: value for key, value, _ in options})


# ALTER TABLE action table: the action's first word -> reader (cursor after that word).
_ALTER_ACTIONS: dict[str, Callable[[Cursor], AlterTableAction]] = {
    "ADD": _add_column,
    "DROP": _drop_column,
    "MODIFY": _modify_column,
    "ALTER": _alter_column,
    "RENAME": _rename_column,
    "SET": _set_properties,
}


# --- DROP / DESCRIBE / SHOW ----------------------------------------------------------------


def parse_drop_table(cur: Cursor, table_type: str | None = None) -> DropTable:
    """``[IF EXISTS] [ns.]t``."""
    if_exists = cur.accept("IF", "EXISTS")
    namespace, name = cur.qualified_name("Table")
    cur.expect_end()
    return DropTable(namespace, name, table_type, if_exists)


def parse_describe_table(cur: Cursor) -> DescribeTable:
    """``[ns.]t [HISTORY]`` (after DESCRIBE TABLE / DESC TABLE)."""
    namespace, name = cur.qualified_name("Table")
    history = cur.accept("HISTORY")
    cur.expect_end()
    return DescribeTable(namespace, name, history)


def parse_show_tables(cur: Cursor) -> ShowTables:
    """``[IN|FROM [NAMESPACE] ns]``."""
    namespace = None
    if cur.accept_any("IN", "FROM"):
        cur.accept("NAMESPACE")
        namespace = cur.checked_name("Namespace", reference_problem)
    cur.expect_end()
    return ShowTables(namespace)


def parse_show_stats(cur: Cursor) -> ShowTableStats:
    """``FOR TABLE [ns.]t`` (after SHOW STATS)."""
    cur.expect("FOR", "TABLE")
    namespace, name = cur.qualified_name("Table")
    cur.expect_end()
    return ShowTableStats(namespace, name)
