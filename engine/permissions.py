"""The role rules of PROTOCOL.md §2.7, in one place. Each check raises PermissionDenied with
the message the protocol shows, or returns."""

from __future__ import annotations

from .catalog import SYSTEM_NAMESPACE, Catalog, TableDef
from .errors import PermissionDenied
from .session import Session

_ADMIN_MESSAGE = "Admin privileges (DBA or System role) required for {what}"

# Which roles an actor may impersonate with EXECUTE AS USER.
_IMPERSONATION_TARGETS = {
    "system": {"user", "service", "dba", "system"},
    "dba": {"user", "service", "dba"},
    "service": {"user", "service"},
    "user": set(),
}


def require_admin(session: Session, what: str) -> None:
    if not session.is_admin:
        raise PermissionDenied(_ADMIN_MESSAGE.format(what=what))


def require_service(session: Session, what: str) -> None:
    """Service, dba and system may; plain users may not."""
    if session.role == "user":
        raise PermissionDenied(f"Service, DBA or System role required for {what}")


def check_create_table(session: Session, table_type: str) -> None:
    if table_type == "SHARED" and session.role == "user":
        raise PermissionDenied("Users may only create USER or STREAM tables; SHARED tables "
                               "require the service, DBA or System role")


def check_alter_table(session: Session, table: TableDef) -> None:
    allowed = {"user": ("USER", "STREAM"), "service": ("USER", "SHARED", "STREAM")}
    if table.namespace == SYSTEM_NAMESPACE:
        raise PermissionDenied("System tables cannot be altered")
    if not session.is_admin and table.table_type not in allowed[session.role]:
        raise PermissionDenied(f"Role '{session.role}' may not alter {table.table_type} table "
                               f"'{table.qualified_name}'")


def check_drop_table(session: Session, table: TableDef) -> None:
    if table.namespace == SYSTEM_NAMESPACE and session.role != "system":
        raise PermissionDenied("System tables cannot be dropped")
    require_admin(session, "DROP TABLE")


def can_read_shared(session: Session, table: TableDef) -> bool:
    level = table.options.access_level or "PRIVATE"
    if level == "PUBLIC":
        return True
    if level == "DBA":
        return session.is_admin
    return session.role != "user"


def check_read(session: Session, table: TableDef) -> None:
    """Reading any table: system tables admin-only, SHARED by access level; USER/STREAM are
    always readable (the caller only ever sees their own partition)."""
    if table.namespace == SYSTEM_NAMESPACE:
        require_admin(session, "system tables")
    elif table.table_type == "SHARED" and not can_read_shared(session, table):
        raise PermissionDenied(f"Access denied to shared table '{table.qualified_name}' "
                               f"(access level {table.options.access_level or 'PRIVATE'})")


def check_write(session: Session, table: TableDef) -> None:
    if table.namespace == SYSTEM_NAMESPACE:
        raise PermissionDenied("System tables are read-only")
    if table.table_type != "SHARED":
        return
    level = table.options.access_level or "PRIVATE"
    if session.role == "user" or (level == "DBA" and not session.is_admin):
        raise PermissionDenied(f"Write access denied to shared table '{table.qualified_name}'")


def check_impersonation(actor: Session, target_user: str, target_role: str) -> None:
    if target_user == actor.user_id:
        return
    if target_role not in _IMPERSONATION_TARGETS[actor.role]:
        raise PermissionDenied(f"EXECUTE AS USER is not authorized: actor '{actor.user_id}' "
                               f"({actor.role}) cannot target '{target_user}' ({target_role})")


def impersonated(catalog: Catalog, actor: Session, target_user: str) -> Session:
    """The session ``actor`` runs as on behalf of ``target_user`` (EXECUTE AS USER, and the
    ingest endpoint's ``?user_id=``): the target's id with role ``user``. A user id the
    catalog does not know counts as role ``user`` (PROTOCOL §2.7), so it may be targeted.
    Raises ``PermissionDenied``."""
    target = catalog.live_user(target_user)
    check_impersonation(actor, target_user, target.role if target else "user")
    return actor.impersonating(target_user)
