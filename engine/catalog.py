"""The catalog: namespaces, tables, views, users and storages — a projection of catalog events.

``Catalog.apply`` is the only mutator and is deterministic (no clock, no randomness: every
timestamp and id travels inside the event), so replaying the same events always rebuilds
the same catalog. Task safety: used from the trio thread only; readers in worker threads
get immutable ``TableDef`` objects.

Tables and views share one name space per namespace: the SQL handlers refuse a view named
like a table and a table named like a view, each under the write lock (``sql/ddl_view.py``).
``apply`` itself never refuses an event that is already in the log; should a WAL ever hold
both, table lookups win (``query.py`` resolves tables before views).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .events import CatalogEvent, Kind
from .ids import seq_floor_for_unix_ms
from .topics.state import TOPIC_KINDS, TopicCatalog
from .types import KalamType

SYSTEM_NAMESPACE = "system"
DEFAULT_NAMESPACE = "default"
ROOT_USER = "root"
LOCAL_STORAGE = "local"
ROLES = ("user", "service", "dba", "system")
ADMIN_ROLES = ("dba", "system")
TABLE_TYPES = ("USER", "SHARED", "STREAM")
ACCESS_LEVELS = ("PUBLIC", "PRIVATE", "RESTRICTED", "DBA")
SEQ_COLUMN = "_seq"
DELETED_COLUMN = "_deleted"


@dataclass(frozen=True, slots=True)
class ColumnDef:
    id: int
    name: str
    type: KalamType
    nullable: bool = True
    primary_key: bool = False
    # {"fn": "SNOWFLAKE_ID"|"NOW"|"UUID_V7"|"ULID"|"CURRENT_USER"} or {"value": <JSON value>}
    default: dict | None = None
    # Value shown for rows written before this column was added (ADD COLUMN … DEFAULT v);
    # fixed at ALTER time so a later SET DEFAULT does not rewrite history.
    fill: Any = None

    @property
    def storage_name(self) -> str:
        """The Arrow field name used in events and segments (stable across renames)."""
        return f"c{self.id}"

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "type": self.type.to_json(),
                "nullable": self.nullable, "primary_key": self.primary_key,
                "default": self.default, "fill": self.fill}

    @classmethod
    def from_json(cls, data: dict) -> ColumnDef:
        return cls(int(data["id"]), data["name"], KalamType.from_json(data["type"]),
                   bool(data["nullable"]), bool(data["primary_key"]), data.get("default"),
                   data.get("fill"))


@dataclass(frozen=True, slots=True)
class TableOptions:
    access_level: str | None = None  # SHARED only (default PRIVATE)
    ttl_seconds: int | None = None  # STREAM only (required)
    flush_rows: int | None = None
    flush_interval_seconds: int | None = None
    storage_id: str = LOCAL_STORAGE
    use_user_storage: bool = False


@dataclass(frozen=True, slots=True)
class TableDef:
    table_id: int
    namespace: str
    name: str
    table_type: str
    columns: tuple[ColumnDef, ...]
    options: TableOptions = field(default_factory=TableOptions)
    version: int = 1
    next_column_id: int = 1
    created_at_ms: int = 0
    updated_at_ms: int = 0

    @property
    def qualified_name(self) -> str:
        return f"{self.namespace}.{self.name}"

    @property
    def pk(self) -> ColumnDef | None:
        return next((c for c in self.columns if c.primary_key), None)

    def column(self, name: str) -> ColumnDef | None:
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)

    def expiry_seq_floor(self, now_ms: int) -> int | None:
        """STREAM tables: versions with a smaller ``_seq`` are past ``TTL_SECONDS`` and
        invisible everywhere; None for tables without expiry."""
        if self.table_type != "STREAM" or not self.options.ttl_seconds:
            return None
        return seq_floor_for_unix_ms(now_ms - self.options.ttl_seconds * 1000)

    @property
    def is_user_scoped(self) -> bool:
        return self.table_type in ("USER", "STREAM")

    def to_json(self) -> dict:
        return {"table_id": self.table_id, "namespace": self.namespace, "name": self.name,
                "table_type": self.table_type, "columns": [c.to_json() for c in self.columns],
                "options": asdict(self.options), "version": self.version,
                "next_column_id": self.next_column_id, "created_at_ms": self.created_at_ms,
                "updated_at_ms": self.updated_at_ms}

    @classmethod
    def from_json(cls, data: dict) -> TableDef:
        return cls(int(data["table_id"]), data["namespace"], data["name"], data["table_type"],
                   tuple(ColumnDef.from_json(c) for c in data["columns"]),
                   TableOptions(**data["options"]), int(data["version"]),
                   int(data["next_column_id"]), int(data["created_at_ms"]),
                   int(data["updated_at_ms"]))


@dataclass(frozen=True, slots=True)
class ViewDef:
    """A stored view: its defining query as PostgreSQL-dialect SQL text whose table references
    are all qualified (``ns.t``), and the optional output column names of ``(cols)``."""

    namespace: str
    name: str
    sql: str
    columns: tuple[str, ...] = ()
    created_at_ms: int = 0

    @property
    def qualified_name(self) -> str:
        return f"{self.namespace}.{self.name}"

    def to_json(self) -> dict:
        return {"namespace": self.namespace, "name": self.name, "sql": self.sql,
                "columns": list(self.columns), "created_at_ms": self.created_at_ms}

    @classmethod
    def from_json(cls, data: dict) -> ViewDef:
        return cls(data["namespace"], data["name"], data["sql"],
                   tuple(data.get("columns") or ()), int(data["created_at_ms"]))


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    created_at_ms: int
    description: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    role: str
    password_hash: str = field(default="", repr=False)
    email: str | None = None
    auth_type: str = "Password"  # Password | OAuth | Internal
    auth_data: str | None = None
    storage_mode: str = "table"
    storage_id: str | None = LOCAL_STORAGE
    failed_login_attempts: int = 0
    locked_until: int | None = None
    last_login_at: int | None = None
    created_at: int = 0
    updated_at: int = 0
    last_seen: int | None = None
    deleted_at: int | None = None
    # Bumped on role or password change: tokens minted before carry an older value.
    token_generation: int = 0

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True, slots=True)
class Storage:
    storage_id: str
    storage_type: str = "filesystem"
    storage_name: str | None = None
    description: str | None = None
    base_directory: str | None = None
    credentials: str | None = field(default=None, repr=False)
    config_json: str | None = None
    shared_tables_template: str | None = None
    user_tables_template: str | None = None
    created_at: int = 0
    updated_at: int = 0


class Catalog:
    """Namespaces, tables, views, users and storages, rebuilt by applying catalog events."""

    def __init__(self) -> None:
        self.namespaces: dict[str, Namespace] = {}
        self.tables: dict[int, TableDef] = {}
        self._table_ids: dict[tuple[str, str], int] = {}
        self.views: dict[tuple[str, str], ViewDef] = {}  # (namespace, name) -> view
        self.users: dict[str, User] = {}
        self.storages: dict[str, Storage] = {}
        self.topics = TopicCatalog()  # topics, routes, group offsets (engine/topics/state.py)
        self.applied_lsn = 0

    # ---- lookups ---------------------------------------------------------------------

    def table(self, namespace: str, name: str) -> TableDef | None:
        table_id = self._table_ids.get((namespace.lower(), name.lower()))
        return None if table_id is None else self.tables[table_id]

    def tables_in(self, namespace: str) -> list[TableDef]:
        return sorted((t for t in self.tables.values() if t.namespace == namespace),
                      key=lambda t: t.name)

    def view(self, namespace: str, name: str) -> ViewDef | None:
        return self.views.get((namespace.lower(), name.lower()))

    def views_in(self, namespace: str) -> list[ViewDef]:
        return sorted((v for v in self.views.values() if v.namespace == namespace),
                      key=lambda v: v.name)

    def live_user(self, user_id: str) -> User | None:
        user = self.users.get(user_id)
        return None if user is None or user.is_deleted else user

    # ---- the only mutator ----------------------------------------------------------

    def apply(self, event: CatalogEvent, lsn: int) -> None:
        """Applies one event. Events below ``applied_lsn`` (already in a checkpoint) are
        skipped, so replaying a tail that overlaps the checkpoint is harmless."""
        if lsn <= self.applied_lsn:
            return
        if event.kind in TOPIC_KINDS:  # topic records keep the LSN they were created at
            self.topics.apply(event.kind, event.body, lsn)
        else:
            _APPLY[event.kind](self, event.body)
        self.applied_lsn = lsn

    def _namespace_created(self, body: dict) -> None:
        self.namespaces[body["name"]] = Namespace(body["name"], int(body["created_at_ms"]),
                                                  body.get("description"))

    def _namespace_altered(self, body: dict) -> None:
        self.namespaces[body["name"]] = replace(self.namespaces[body["name"]],
                                                description=body.get("description"))

    def _namespace_dropped(self, body: dict) -> None:
        for table in self.tables_in(body["name"]):
            self._table_dropped({"table_id": table.table_id})
        for view in self.views_in(body["name"]):
            del self.views[(view.namespace, view.name)]
        del self.namespaces[body["name"]]

    def _table_put(self, body: dict) -> None:
        table = TableDef.from_json(body["table"])
        old = self.tables.get(table.table_id)
        if old is not None:
            self._table_ids.pop((old.namespace, old.name), None)
        self.tables[table.table_id] = table
        self._table_ids[(table.namespace, table.name)] = table.table_id

    def _table_dropped(self, body: dict) -> None:
        table = self.tables.pop(int(body["table_id"]))
        del self._table_ids[(table.namespace, table.name)]

    def _view_created(self, body: dict) -> None:
        view = ViewDef.from_json(body)
        self.views[(view.namespace, view.name)] = view

    def _view_dropped(self, body: dict) -> None:
        self.views.pop((body["namespace"], body["name"]), None)

    def _user_put(self, body: dict) -> None:
        self.users[body["user_id"]] = User(**body)

    def _user_dropped(self, body: dict) -> None:
        user = self.users[body["user_id"]]
        self.users[user.user_id] = replace(user, deleted_at=int(body["deleted_at"]),
                                           updated_at=int(body["deleted_at"]))

    def _storage_put(self, body: dict) -> None:
        self.storages[body["storage_id"]] = Storage(**body)

    def _storage_dropped(self, body: dict) -> None:
        del self.storages[body["storage_id"]]

    # ---- checkpoints -----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "applied_lsn": self.applied_lsn,
            "namespaces": [asdict(n) for n in self.namespaces.values()],
            "tables": [t.to_json() for t in self.tables.values()],
            "views": [v.to_json() for v in self.views.values()],
            "users": [asdict(u) for u in self.users.values()],
            "storages": [asdict(s) for s in self.storages.values()],
            "topics": self.topics.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Catalog:
        catalog = cls()
        for item in data["namespaces"]:
            catalog.namespaces[item["name"]] = Namespace(**item)
        for item in data["tables"]:
            catalog._table_put({"table": item})
        for item in data.get("views", ()):  # absent in checkpoints written before views
            catalog._view_created(item)
        for item in data["users"]:
            catalog.users[item["user_id"]] = User(**item)
        for item in data["storages"]:
            catalog.storages[item["storage_id"]] = Storage(**item)
        catalog.topics = TopicCatalog.from_json(data.get("topics"))  # absent before topics
        catalog.applied_lsn = int(data["applied_lsn"])
        return catalog


_APPLY = {
    Kind.NAMESPACE_CREATED: Catalog._namespace_created,
    Kind.NAMESPACE_ALTERED: Catalog._namespace_altered,
    Kind.NAMESPACE_DROPPED: Catalog._namespace_dropped,
    Kind.TABLE_CREATED: Catalog._table_put,
    Kind.TABLE_ALTERED: Catalog._table_put,
    Kind.TABLE_DROPPED: Catalog._table_dropped,
    Kind.VIEW_CREATED: Catalog._view_created,
    Kind.VIEW_DROPPED: Catalog._view_dropped,
    Kind.USER_CREATED: Catalog._user_put,
    Kind.USER_ALTERED: Catalog._user_put,
    Kind.USER_DROPPED: Catalog._user_dropped,
    Kind.STORAGE_CREATED: Catalog._storage_put,
    Kind.STORAGE_ALTERED: Catalog._storage_put,
    Kind.STORAGE_DROPPED: Catalog._storage_dropped,
}
