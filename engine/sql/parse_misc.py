"""Transactions, backup/restore, export, cluster and DataFusion meta statements (PROTOCOL.md
§1.3, §3.15, §2.7).

Each ``parse_*`` function takes a cursor positioned just after the statement's leading keywords
and returns a statement from ``statements.py``, or raises ``InvalidSql(at_classify=True)``.

Choices where the spec is silent:

- BEGIN/COMMIT/ROLLBACK accept an optional WORK or TRANSACTION and nothing else (no isolation
  levels, no savepoints).
- CLUSTER commands are parsed into ``ClusterCommand``; LIST/LS/STATUS are refused as CLI-only
  and LEAVE as not supported, with the reference's messages.
- ``SET name = value`` / ``SET name TO value`` needs the ``=`` or ``TO``; the value is a string
  literal's content or the rest of the statement as written.
- ``SHOW <name>`` (not matched by a longer SHOW entry) is a DataFusion setting lookup.
"""

from __future__ import annotations

from engine.sql.cursor import Cursor
from engine.sql.lexer import TokenKind
from engine.sql.names import reference_problem
from engine.sql.statements import (
    BackupDatabase,
    BeginTransaction,
    ClusterCommand,
    CommitTransaction,
    DataFusionDescribe,
    ExportUserData,
    RestoreDatabase,
    RollbackTransaction,
    SetVariable,
    ShowAll,
    ShowColumns,
    ShowExport,
    ShowVariable,
)

# --- transactions --------------------------------------------------------------------------


def _transaction_word(cur: Cursor) -> None:
    cur.accept_any("WORK", "TRANSACTION")
    cur.expect_end()


def parse_begin(cur: Cursor) -> BeginTransaction:
    """BEGIN [WORK|TRANSACTION]; also the tail of START TRANSACTION (nothing may follow)."""
    _transaction_word(cur)
    return BeginTransaction()


def parse_commit(cur: Cursor) -> CommitTransaction:
    _transaction_word(cur)
    return CommitTransaction()


def parse_rollback(cur: Cursor) -> RollbackTransaction:
    _transaction_word(cur)
    return RollbackTransaction()


# --- backup, restore, export ---------------------------------------------------------------


def parse_backup(cur: Cursor) -> BackupDatabase:
    """``ns TO 'path'`` after BACKUP DATABASE."""
    namespace = cur.checked_name("Namespace", reference_problem)
    cur.expect("TO")
    path = cur.string("a backup path")
    cur.expect_end()
    return BackupDatabase(namespace, path)


def parse_restore(cur: Cursor) -> RestoreDatabase:
    """``ns FROM 'path'`` after RESTORE DATABASE."""
    namespace = cur.checked_name("Namespace", reference_problem)
    cur.expect("FROM")
    path = cur.string("a backup path")
    cur.expect_end()
    return RestoreDatabase(namespace, path)


def parse_export_user_data(cur: Cursor) -> ExportUserData:
    cur.expect_end()
    return ExportUserData()


def parse_show_export(cur: Cursor) -> ShowExport:
    cur.expect_end()
    return ShowExport()


# --- cluster -------------------------------------------------------------------------------


def parse_cluster(cur: Cursor) -> ClusterCommand:
    """The words after CLUSTER (see ``ClusterCommand``)."""
    for words in _CLUSTER_CLI_ONLY:
        if cur.looking_at(*words):
            raise cur.error(f"CLUSTER {words[0]} is a CLI-only command. Use \\cluster list in "
                            "kalam, or query system.cluster and system.cluster_groups directly.")
    if cur.looking_at("LEAVE"):
        raise cur.error("CLUSTER LEAVE is not supported yet")
    for words, reader in _CLUSTER_ACTIONS.items():
        if cur.accept(*words):
            command = reader(cur, " ".join(words))
            cur.expect_end()
            return command
    raise cur.error("Expected SNAPSHOT, PURGE, TRIGGER ELECTION, TRANSFER LEADER, STEPDOWN, "
                    "CLEAR, JOIN or REBALANCE after CLUSTER")


def _plain(cur: Cursor, action: str) -> ClusterCommand:
    return ClusterCommand(action)


def _purge(cur: Cursor, action: str) -> ClusterCommand:
    # The CLI's ``--upto n`` is a SQL comment to our scanner: SQL spells it ``UPTO n`` or ``n``.
    if cur.accept("UPTO"):
        cur.accept("=")
    return ClusterCommand(action, upto=cur.integer("the log index to purge up to"))


def _transfer_leader(cur: Cursor, action: str) -> ClusterCommand:
    return ClusterCommand(action, node_id=cur.integer("a node id", minimum=1))


def _join(cur: Cursor, action: str) -> ClusterCommand:
    node_id = cur.integer("a node id", minimum=1)
    named = cur.accept("RPC")
    rpc_addr = _address(cur, "the RPC address")
    if named:
        cur.expect("API")
    return ClusterCommand(action, node_id=node_id, rpc_addr=rpc_addr,
                          api_addr=_address(cur, "the API address"))


def _address(cur: Cursor, what: str) -> str:
    """A quoted address, or unquoted text up to the next space (host:port)."""
    token = cur.peek()
    if token is not None and token.kind is TokenKind.STRING:
        return cur.string(what)
    first = cur.next(what)
    end = first.end
    while not cur.at_end() and cur.peek().start == end and cur.peek().upper not in ("API",):
        end = cur.next(what).end
    return cur.sql[first.start:end]


_CLUSTER_CLI_ONLY = (("LIST",), ("LS",), ("STATUS",))
# CLUSTER action table: words after CLUSTER -> reader(cursor after the words, action name).
_CLUSTER_ACTIONS = {
    ("SNAPSHOT",): _plain,
    ("PURGE",): _purge,
    ("TRIGGER", "ELECTION"): _plain,
    ("TRANSFER", "LEADER"): _transfer_leader,
    ("STEPDOWN",): _plain,
    ("CLEAR",): _plain,
    ("JOIN",): _join,
    ("REBALANCE",): _plain,
}


# --- DataFusion meta commands --------------------------------------------------------------


def parse_set_variable(cur: Cursor) -> SetVariable:
    """``name [= | TO] value`` after SET (SET NAMESPACE has its own entry)."""
    parts = [cur.identifier("a setting name")]
    while cur.accept("."):
        parts.append(cur.identifier("a setting name"))
    if not cur.accept_any("=", "TO"):
        raise cur.error("Expected = or TO after the setting name")
    start = cur.peek()
    if start is None:
        raise cur.error("Expected a value")
    if start.kind is TokenKind.STRING and cur.peek(1) is None:
        value = start.value
    else:
        value = cur.sql[start.start:cur.tokens[-1].end]
    cur.index = len(cur.tokens)
    return SetVariable(".".join(parts), value)


def parse_show_variable(cur: Cursor) -> ShowVariable:
    parts = [cur.identifier("a setting name")]
    while cur.accept("."):
        parts.append(cur.identifier("a setting name"))
    cur.expect_end()
    return ShowVariable(".".join(parts))


def parse_show_all(cur: Cursor) -> ShowAll:
    cur.expect_end()
    return ShowAll()


def parse_show_columns(cur: Cursor) -> ShowColumns:
    """``FROM|IN [ns.]t [FROM|IN ns]`` after SHOW COLUMNS."""
    if not cur.accept_any("FROM", "IN"):
        raise cur.error("Expected FROM or IN after SHOW COLUMNS")
    namespace, table = cur.qualified_name("Table")
    if cur.accept_any("FROM", "IN"):
        if namespace is not None:
            raise cur.error("The namespace is given twice")
        namespace = cur.checked_name("Namespace", reference_problem)
    cur.expect_end()
    return ShowColumns(namespace, table)


def parse_datafusion_describe(cur: Cursor) -> DataFusionDescribe:
    """``[ns.]t`` after DESCRIBE / DESC (without TABLE)."""
    namespace, name = cur.qualified_name("Table")
    cur.expect_end()
    return DataFusionDescribe(namespace, name)
