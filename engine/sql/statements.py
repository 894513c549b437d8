"""The classified statement kinds: what ``classify()`` returns and the executor dispatches on.

Every class is a frozen dataclass. Conventions:

- Names of catalog objects (namespaces, tables, columns, topics, views, storages) are
  identifiers: an unquoted one is folded to lower case, a quoted one keeps its case. They are
  kept *as written*: ``namespace`` is ``None`` when the statement did not qualify the name; the
  executor resolves it (against the request's ``namespace_id``, or ``default`` where a section
  of PROTOCOL.md says so).
- User ids, job ids, live-query ids, consumer groups, paths and option values are values: kept
  exactly as written (quotes removed).
- Table types are ``"USER"``, ``"SHARED"`` or ``"STREAM"``; roles are lowercase.
- Secrets (passwords, storage credentials) are ``field(repr=False)``: they never appear in a
  repr, a log line or an error.
- ``Query``/``Insert``/``Update``/``Delete``/``CreateView``/``Explain`` hold sqlglot expressions
  parsed with ``read="postgres"`` in which ``CURRENT_USER``, ``CURRENT_USER()``,
  ``CURRENT_USER_ID()`` became ``KDB_CURRENT_USER()`` and ``CURRENT_ROLE``/``CURRENT_ROLE()``
  became ``KDB_CURRENT_ROLE()`` (§3.1), and a ``FILE("x")``/``FILE('x')`` upload placeholder
  (§5) became ``KDB_FILE('x')``.
- Classes holding a ``dict`` compare by value but are not hashable.

``repr()`` of every node is its canonical one-line form (the golden fixtures compare it):
fields still at their default value and ``repr=False`` fields are left out, sqlglot expressions
render as ``<their PostgreSQL SQL>``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

TABLE_TYPES = ("USER", "SHARED", "STREAM")


class Node:
    """Mixin giving dataclasses the canonical repr described in the module docstring."""

    def __repr__(self) -> str:
        assert dataclasses.is_dataclass(self)
        parts = [f"{f.name}={_render(getattr(self, f.name))}"
                 for f in dataclasses.fields(self)
                 if f.repr and not _is_default(f, getattr(self, f.name))]
        return f"{type(self).__name__}({', '.join(parts)})"


def _is_default(f: dataclasses.Field, value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return value is f.default or (type(value) is type(f.default) and value == f.default)
    if f.default_factory is not dataclasses.MISSING:
        return value == f.default_factory()
    return False


def _render(value: Any) -> str:
    if isinstance(value, exp.Expression):
        return f"<{value.sql(dialect='postgres')}>"
    if isinstance(value, tuple):
        inner = ", ".join(_render(item) for item in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key!r}: {_render(item)}" for key, item in value.items()) + "}"
    return repr(value)


class Statement(Node):
    """Base of every classified statement."""


# --- queries, DML, transactions (§3.1, §3.7, §3.8) -----------------------------------------


@dataclass(frozen=True, repr=False)
class Query(Statement):
    """SELECT / WITH ... SELECT / VALUES / a parenthesised query."""
    expression: exp.Expression


@dataclass(frozen=True, repr=False)
class Insert(Statement):
    expression: exp.Insert


@dataclass(frozen=True)
class Param:
    """``$n`` in an InsertValues row (1-based)."""
    index: int


@dataclass(frozen=True)
class DefaultValue:
    """The DEFAULT keyword in an InsertValues row."""


@dataclass(frozen=True)
class CallValue:
    """An argument-less value function in an InsertValues row: NOW (also CURRENT_TIMESTAMP),
    SNOWFLAKE_ID, UUID_V7, ULID, KDB_CURRENT_USER (CURRENT_USER…), KDB_CURRENT_ROLE."""
    name: str


@dataclass(frozen=True, repr=False)
class InsertValues(Statement):
    """The fast path for ``INSERT INTO [ns.]t [(cols)] VALUES (…), …`` whose every item is a
    literal (str, int, decimal.Decimal for other numbers, bool, None), a ``Param``,
    ``DefaultValue`` or ``CallValue`` — read by ``insert_values.py`` without sqlglot. Anything
    else (expressions, SELECT, ON CONFLICT, RETURNING) goes through ``Insert``."""
    namespace: str | None
    table: str
    columns: tuple[str, ...] | None
    rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True, repr=False)
class Update(Statement):
    """UPDATE; a missing WHERE is the executor's to reject (with the exact message)."""
    expression: exp.Update


@dataclass(frozen=True, repr=False)
class Delete(Statement):
    """DELETE; a missing WHERE is the executor's to reject (with the exact message)."""
    expression: exp.Delete


@dataclass(frozen=True, repr=False)
class BeginTransaction(Statement):
    """BEGIN [WORK|TRANSACTION] / START TRANSACTION."""


@dataclass(frozen=True, repr=False)
class CommitTransaction(Statement):
    """COMMIT [WORK|TRANSACTION]."""


@dataclass(frozen=True, repr=False)
class RollbackTransaction(Statement):
    """ROLLBACK [WORK|TRANSACTION]."""


# --- namespaces (§3.2) ---------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class CreateNamespace(Statement):
    name: str
    if_not_exists: bool = False


@dataclass(frozen=True, repr=False)
class DropNamespace(Statement):
    name: str
    if_exists: bool = False
    cascade: bool = False


@dataclass(frozen=True, repr=False)
class AlterNamespace(Statement):
    """ALTER NAMESPACE n SET DESCRIPTION '...'."""
    name: str
    description: str


@dataclass(frozen=True, repr=False)
class ShowNamespaces(Statement):
    pass


@dataclass(frozen=True, repr=False)
class UseNamespace(Statement):
    """USE n / USE NAMESPACE n / SET NAMESPACE n."""
    name: str


# --- tables (§3.3, §3.4) -------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class ColumnDefault(Node):
    """A column DEFAULT.

    ``kind`` is "function" (``function`` holds the canonical name: NOW (also for
    CURRENT_TIMESTAMP), SNOWFLAKE_ID, UUID_V7, ULID or CURRENT_USER) or "literal" (``value`` is
    an int, float, str, bool or None for NULL). ``text`` is the expression as written.
    """
    kind: str
    text: str
    function: str | None = None
    value: Any = None


@dataclass(frozen=True, repr=False)
class ColumnDef(Node):
    """One column of CREATE TABLE / ALTER TABLE ADD COLUMN.

    ``type_text`` is the type as written, upper-cased and re-spaced: ``"DECIMAL(10,2)"``,
    ``"DOUBLE PRECISION"``, ``"EMBEDDING(384)"``, ``"BIGSERIAL"``; mapping it to a data type is
    the executor's job. ``auto_id`` marks AUTO_INCREMENT, GENERATED ... AS IDENTITY and the
    SERIAL types (the executor gives the column DEFAULT SNOWFLAKE_ID()); it never comes with a
    ``default``. A primary key column is always ``nullable=False``.
    """
    name: str
    type_text: str
    nullable: bool = True
    default: ColumnDefault | None = None
    primary_key: bool = False
    auto_id: bool = False
    comment: str | None = None


@dataclass(frozen=True, repr=False)
class FlushPolicy(Node):
    """FLUSH_POLICY 'rows:N', 'interval:S' or 'rows:N,interval:S'; a 0 part is stored as None.
    At least one part is set."""
    row_limit: int | None = None
    interval_seconds: int | None = None


@dataclass(frozen=True, repr=False)
class CreateTable(Statement):
    """CREATE [USER|SHARED|STREAM] TABLE.

    ``table_type`` comes from the prefix keyword or the TYPE option; ``None`` when neither was
    given (the executor applies §3.3: SHARED, or USER in the caller's own namespace).
    ``options`` maps each WITH option's upper-cased key, in the order written, to its value: a
    ``str`` (quoted, or a bare word as written) or an ``int`` (a bare integer). Keys are known to
    be valid option names; values are unchecked except TYPE and FLUSH_POLICY, which are also
    parsed into ``table_type`` and ``flush_policy``. ``primary_key`` names the single PK column
    (None only for STREAM tables). ``using`` is the ignored ``USING x`` word.
    """
    namespace: str | None
    name: str
    table_type: str | None
    columns: tuple[ColumnDef, ...]
    primary_key: str | None
    if_not_exists: bool = False
    options: dict[str, str | int] = field(default_factory=dict)
    flush_policy: FlushPolicy | None = None
    using: str | None = None


@dataclass(frozen=True, repr=False)
class AddColumn(Node):
    column: ColumnDef


@dataclass(frozen=True, repr=False)
class DropColumn(Node):
    name: str
    if_exists: bool = False


@dataclass(frozen=True, repr=False)
class ModifyColumn(Node):
    """MODIFY [COLUMN] c TYPE [NOT NULL|NULL] or ALTER COLUMN c [SET DATA] TYPE t.
    ``nullable`` is None when not stated."""
    name: str
    type_text: str
    nullable: bool | None = None


@dataclass(frozen=True, repr=False)
class SetColumnNullable(Node):
    """ALTER COLUMN c SET NOT NULL (nullable=False) / DROP NOT NULL (nullable=True)."""
    name: str
    nullable: bool


@dataclass(frozen=True, repr=False)
class SetColumnDefault(Node):
    """ALTER COLUMN c SET DEFAULT v / DROP DEFAULT (default=None)."""
    name: str
    default: ColumnDefault | None


@dataclass(frozen=True, repr=False)
class RenameColumn(Node):
    old_name: str
    new_name: str


@dataclass(frozen=True, repr=False)
class SetTableProperties(Node):
    """SET TBLPROPERTIES (ACCESS_LEVEL = '...'); keys upper-cased, values as in CreateTable."""
    properties: dict[str, str | int]


AlterTableAction = (AddColumn | DropColumn | ModifyColumn | SetColumnNullable | SetColumnDefault
                    | RenameColumn | SetTableProperties)


@dataclass(frozen=True, repr=False)
class AlterTable(Statement):
    """ALTER [USER|SHARED|STREAM] TABLE with exactly one action."""
    namespace: str | None
    name: str
    table_type: str | None
    action: AlterTableAction


@dataclass(frozen=True, repr=False)
class DropTable(Statement):
    namespace: str | None
    name: str
    table_type: str | None = None
    if_exists: bool = False


@dataclass(frozen=True, repr=False)
class DescribeTable(Statement):
    """DESCRIBE TABLE t [HISTORY] / DESC TABLE t (any role)."""
    namespace: str | None
    name: str
    history: bool = False


@dataclass(frozen=True, repr=False)
class ShowTables(Statement):
    """SHOW TABLES [IN|FROM [NAMESPACE] ns]; ``namespace`` None lists every namespace."""
    namespace: str | None = None


@dataclass(frozen=True, repr=False)
class ShowTableStats(Statement):
    """SHOW STATS FOR TABLE t."""
    namespace: str | None
    name: str


@dataclass(frozen=True, repr=False)
class CreateView(Statement):
    """CREATE [OR REPLACE] VIEW [IF NOT EXISTS] [ns.]v [(cols)] AS <query> (admin only)."""
    namespace: str | None
    name: str
    query: exp.Expression
    columns: tuple[str, ...] = ()
    or_replace: bool = False
    if_not_exists: bool = False


@dataclass(frozen=True, repr=False)
class DropView(Statement):
    namespace: str | None
    name: str
    if_exists: bool = False


# --- users (§3.11) -------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class CreateUser(Statement):
    """CREATE USER u WITH PASSWORD 'pw' | OAUTH '<json>' | INTERNAL [ROLE r] [EMAIL 'e'].

    ``auth_type`` is "password", "oauth" or "internal"; ``password`` is set only for
    "password", ``oauth`` (the JSON text, known to be an object with string ``provider`` and
    ``subject``) only for "oauth". ``role`` defaults to "user".
    """
    user_id: str
    auth_type: str
    role: str = "user"
    email: str | None = None
    oauth: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, repr=False)
class AlterUser(Statement):
    """ALTER USER u SET PASSWORD 'pw' | SET ROLE r | SET EMAIL 'e': exactly one field is set."""
    user_id: str
    role: str | None = None
    email: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, repr=False)
class DropUser(Statement):
    user_id: str
    if_exists: bool = False


# --- storage, flush, compaction, jobs (§3.12) ----------------------------------------------


@dataclass(frozen=True, repr=False)
class CreateStorage(Statement):
    """CREATE STORAGE id TYPE t [clauses]. ``storage_type`` is filesystem, s3, gcs or azure.
    ``base_directory`` comes from PATH or BASE_DIRECTORY. ``credentials``/``config`` are JSON
    object texts."""
    storage_id: str
    storage_type: str
    name: str | None = None
    description: str | None = None
    base_directory: str | None = None
    bucket: str | None = None
    region: str | None = None
    shared_tables_template: str | None = None
    user_tables_template: str | None = None
    config: str | None = None
    credentials: str | None = field(default=None, repr=False)


@dataclass(frozen=True, repr=False)
class AlterStorage(Statement):
    """ALTER STORAGE id SET <clause> 'v' [, ...]: the fields that were given are not None."""
    storage_id: str
    name: str | None = None
    description: str | None = None
    base_directory: str | None = None
    bucket: str | None = None
    region: str | None = None
    shared_tables_template: str | None = None
    user_tables_template: str | None = None
    config: str | None = None
    credentials: str | None = field(default=None, repr=False)


@dataclass(frozen=True, repr=False)
class DropStorage(Statement):
    storage_id: str
    if_exists: bool = False


@dataclass(frozen=True, repr=False)
class ShowStorages(Statement):
    pass


@dataclass(frozen=True, repr=False)
class CheckStorage(Statement):
    """STORAGE CHECK id [EXTENDED]."""
    storage_id: str
    extended: bool = False


@dataclass(frozen=True, repr=False)
class FlushTable(Statement):
    """STORAGE FLUSH TABLE [ns.]t."""
    namespace: str | None
    name: str


@dataclass(frozen=True, repr=False)
class FlushAll(Statement):
    """STORAGE FLUSH ALL [IN [NAMESPACE] ns]."""
    namespace: str | None = None


@dataclass(frozen=True, repr=False)
class CompactTable(Statement):
    """STORAGE COMPACT TABLE [ns.]t."""
    namespace: str | None
    name: str


@dataclass(frozen=True, repr=False)
class CompactAll(Statement):
    """STORAGE COMPACT ALL [IN [NAMESPACE] ns]."""
    namespace: str | None = None


@dataclass(frozen=True, repr=False)
class ShowManifest(Statement):
    pass


@dataclass(frozen=True, repr=False)
class KillJob(Statement):
    job_id: str


# --- topics (§3.13) ------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class CreateTopic(Statement):
    namespace: str
    name: str
    partitions: int = 1


@dataclass(frozen=True, repr=False)
class AddTopicSource(Statement):
    """ALTER TOPIC ns.name ADD SOURCE [ns.]table ON INSERT|UPDATE|DELETE [WHERE e] [WITH (...)].

    ``operation`` is "insert", "update" or "delete"; ``where`` is the condition text (known to
    parse as a PostgreSQL expression); ``payload`` is "key", "full" (default) or "diff". An
    unqualified source table means ``default.table`` (§3.13), which the executor applies.
    """
    namespace: str
    name: str
    source_namespace: str | None
    source_table: str
    operation: str
    where: str | None = None
    payload: str = "full"


@dataclass(frozen=True, repr=False)
class DropTopic(Statement):
    namespace: str
    name: str


@dataclass(frozen=True, repr=False)
class ClearTopic(Statement):
    namespace: str
    name: str


@dataclass(frozen=True, repr=False)
class ConsumeTopic(Statement):
    """CONSUME FROM ns.name [GROUP 'g'] [FROM LATEST|EARLIEST|n] [LIMIT n].

    ``start`` is "latest", "earliest", an offset >= 0, or None (not given); ``limit`` is None
    when not given (the executor's default applies, 100 in the reference).
    """
    namespace: str
    name: str
    group: str | None = None
    start: str | int | None = None
    limit: int | None = None


@dataclass(frozen=True, repr=False)
class AckTopic(Statement):
    """ACK ns.name GROUP 'g' [PARTITION p] UPTO OFFSET n (offset inclusive)."""
    namespace: str
    name: str
    group: str
    offset: int
    partition: int = 0


# --- live queries (§3.14) ------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Subscribe(Statement):
    """SUBSCRIBE TO [ns.]table [WHERE e] [OPTIONS (k = v, ...)]; option keys lower-cased,
    values int, bool or str."""
    namespace: str | None
    table: str
    where: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, repr=False)
class KillLiveQuery(Statement):
    live_id: str


# --- miscellaneous (§3.15) -----------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class BackupDatabase(Statement):
    namespace: str
    path: str


@dataclass(frozen=True, repr=False)
class RestoreDatabase(Statement):
    namespace: str
    path: str


@dataclass(frozen=True, repr=False)
class ExportUserData(Statement):
    pass


@dataclass(frozen=True, repr=False)
class ShowExport(Statement):
    pass


@dataclass(frozen=True, repr=False)
class ClusterCommand(Statement):
    """CLUSTER SNAPSHOT | PURGE n | TRIGGER ELECTION | TRANSFER LEADER n | STEPDOWN | CLEAR |
    JOIN n rpc api | REBALANCE. ``action`` is the upper-case words joined by one space
    ("TRANSFER LEADER"); ``node_id``/``upto`` and the JOIN addresses when they apply."""
    action: str
    node_id: int | None = None
    upto: int | None = None
    rpc_addr: str | None = None
    api_addr: str | None = None


@dataclass(frozen=True, repr=False)
class Explain(Statement):
    """EXPLAIN [ANALYZE] [VERBOSE] <query or DML> (admin only)."""
    statement: Query | Insert | Update | Delete
    analyze: bool = False
    verbose: bool = False


@dataclass(frozen=True, repr=False)
class SetVariable(Statement):
    """SET name = value / SET name TO value (admin only). ``name`` lower-cased; ``value`` is a
    string literal's content or the value text as written."""
    name: str
    value: str


@dataclass(frozen=True, repr=False)
class ShowVariable(Statement):
    """SHOW name (a DataFusion setting; admin only)."""
    name: str


@dataclass(frozen=True, repr=False)
class ShowAll(Statement):
    pass


@dataclass(frozen=True, repr=False)
class ShowColumns(Statement):
    """SHOW COLUMNS FROM|IN t [FROM|IN ns] (admin only)."""
    namespace: str | None
    table: str


@dataclass(frozen=True, repr=False)
class DataFusionDescribe(Statement):
    """DESCRIBE t / DESC t without TABLE: DataFusion's meta command (admin only)."""
    namespace: str | None
    name: str
