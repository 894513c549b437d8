"""The dispatch tables: statement class → classify-time role check, and → handler. Nothing else.

A role check listed in ``PREFLIGHT`` runs for every statement of a batch before any of them
executes (PROTOCOL §1.3 step 5: a role-gated statement fails the whole request with 403).
Finer checks that need the catalog (table types, access levels) live in the handlers.
Table statements and DML go through ``ddl_view``'s wrappers, which refuse view names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..permissions import require_admin, require_service
from ..session import Session
from . import admin, ddl_namespace, ddl_table, ddl_view, live, misc, select, topics, users
from . import statements as s
from .context import Ctx
from .results import StatementResult

Handler = Callable[[Ctx, Any], Awaitable[StatementResult | None]]


def _admin(what: str) -> Callable[[s.Statement, Session], None]:
    return lambda statement, session: require_admin(session, what)


def _service(what: str) -> Callable[[s.Statement, Session], None]:
    return lambda statement, session: require_service(session, what)


def _alter_user(statement: s.AlterUser, session: Session) -> None:
    # Users may change their own password (a Sluice decision, PROTOCOL decisions table).
    own_password = (statement.user_id == session.user_id and statement.role is None
                    and statement.email is None)
    if not own_password:
        require_admin(session, "user management")


PREFLIGHT: dict[type, Callable[[Any, Session], None]] = {
    s.CreateNamespace: _admin("namespace operations"),
    s.DropNamespace: _admin("namespace operations"),
    s.AlterNamespace: _admin("namespace operations"),
    s.CreateStorage: _admin("storage operations"),
    s.AlterStorage: _admin("storage operations"),
    s.DropStorage: _admin("storage operations"),
    s.CheckStorage: _admin("storage operations"),
    s.CreateUser: _admin("user management"),
    s.AlterUser: _alter_user,
    s.DropUser: _admin("user management"),
    s.FlushTable: _service("STORAGE FLUSH"),
    s.FlushAll: _service("STORAGE FLUSH"),
    s.CompactTable: _service("STORAGE COMPACT"),
    s.CompactAll: _service("STORAGE COMPACT"),
    s.ShowManifest: _admin("SHOW MANIFEST"),
    s.KillJob: _admin("KILL JOB"),
    s.KillLiveQuery: _admin("KILL LIVE QUERY"),
    s.BackupDatabase: _admin("BACKUP DATABASE"),
    s.RestoreDatabase: _admin("RESTORE DATABASE"),
    s.ClusterCommand: _admin("CLUSTER commands"),
    s.Explain: _admin("EXPLAIN"),
    s.SetVariable: _admin("SET"),
    s.ShowVariable: _admin("SHOW"),
    s.ShowAll: _admin("SHOW ALL"),
    s.ShowColumns: _admin("SHOW COLUMNS"),
    s.DataFusionDescribe: _admin("DESCRIBE"),
    s.CreateView: _admin("CREATE VIEW"),
    s.DropView: _admin("DROP VIEW"),
    s.CreateTopic: _admin("topic operations"),
    s.AddTopicSource: _admin("topic operations"),
    s.DropTopic: _admin("topic operations"),
    s.ClearTopic: _admin("topic operations"),
    s.ConsumeTopic: _service("CONSUME"),
    s.AckTopic: _service("ACK"),
}


def preflight(statement: s.Statement, session: Session) -> None:
    check = PREFLIGHT.get(type(statement))
    if check is not None:
        check(statement, session)


HANDLERS: dict[type, Handler] = {
    s.Query: select.query,
    s.Insert: ddl_view.insert,
    s.InsertValues: ddl_view.insert,
    s.Update: ddl_view.update,
    s.Delete: ddl_view.delete,
    s.CreateNamespace: ddl_namespace.create_namespace,
    s.DropNamespace: ddl_namespace.drop_namespace,
    s.AlterNamespace: ddl_namespace.alter_namespace,
    s.ShowNamespaces: ddl_namespace.show_namespaces,
    s.UseNamespace: ddl_namespace.use_namespace,
    s.CreateTable: ddl_view.create_table,
    s.AlterTable: ddl_view.alter_table,
    s.DropTable: ddl_view.drop_table,
    s.DescribeTable: ddl_table.describe_table,
    s.ShowTables: ddl_table.show_tables,
    s.ShowTableStats: ddl_table.show_table_stats,
    s.CreateUser: users.create_user,
    s.AlterUser: users.alter_user,
    s.DropUser: users.drop_user,
    s.CreateStorage: admin.create_storage,
    s.AlterStorage: admin.alter_storage,
    s.DropStorage: admin.drop_storage,
    s.ShowStorages: admin.show_storages,
    s.CheckStorage: admin.check_storage,
    s.FlushTable: admin.flush_table,
    s.FlushAll: admin.flush_all,
    s.CompactTable: admin.compact_table,
    s.CompactAll: admin.compact_all,
    s.ShowManifest: admin.show_manifest,
    s.KillJob: admin.kill_job,
    s.CreateView: ddl_view.create_view,
    s.DropView: ddl_view.drop_view,
    s.CreateTopic: topics.create_topic,
    s.AddTopicSource: topics.add_topic_source,
    s.DropTopic: topics.drop_topic,
    s.ClearTopic: topics.clear_topic,
    s.ConsumeTopic: topics.consume,
    s.AckTopic: topics.ack,
    s.Subscribe: live.subscribe,
    s.KillLiveQuery: live.kill_live_query,
    s.BackupDatabase: misc.backup_database,
    s.RestoreDatabase: misc.restore_database,
    s.ExportUserData: misc.export_user_data,
    s.ShowExport: misc.show_export,
    s.ClusterCommand: misc.cluster_command,
    s.Explain: select.explain,
    s.SetVariable: misc.set_variable,
    s.ShowVariable: misc.show_variable,
    s.ShowAll: misc.show_all,
    s.ShowColumns: ddl_table.show_columns,
    s.DataFusionDescribe: ddl_table.datafusion_describe,
}


def handler_for(statement: s.Statement) -> Handler:
    return HANDLERS[type(statement)]
