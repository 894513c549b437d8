"""Namespace, user and storage statements (PROTOCOL.md §3.2, §3.11, §3.12).

Each ``parse_*`` function takes a cursor positioned just after the statement's leading keywords
and returns a statement from ``statements.py``, or raises ``InvalidSql(at_classify=True)``.
Role checks are not made here (the executor makes them).

Choices where the spec is silent:

- DROP NAMESPACE of a reserved name (``default``, ``system``, ...) is refused here with
  "Namespace 'x' is reserved and cannot be dropped"; USE and ALTER NAMESPACE accept reserved
  names (``USE default`` must work), checking only the name's shape.
- CREATE USER: ``ROLE`` and ``EMAIL`` may come in either order after the auth clause; ``ROLE``
  defaults to ``user``. User ids are kept exactly as written (quoted or bare).
- Storage ids are identifiers (an unquoted one is lower-cased); one with a hyphen must be
  quoted. Clause values are quoted strings (TYPE may be bare); CREDENTIALS, CONFIG and OAUTH
  must be JSON objects. ALTER STORAGE takes ``SET clause 'v'`` one or more times, separated by
  commas or repeated SET.
- Errors in statements carrying a password or credentials have no source context.
"""

from __future__ import annotations

import json

from engine.sql.cursor import Cursor
from engine.sql.lexer import TokenKind
from engine.sql.names import (
    RESERVED_NAMESPACE_NAMES,
    definition_problem,
    normalise_role,
    reference_problem,
    storage_id_problem,
    user_id_problem,
)
from engine.sql.statements import (
    AlterNamespace,
    AlterStorage,
    AlterUser,
    CheckStorage,
    CompactAll,
    CompactTable,
    CreateNamespace,
    CreateStorage,
    CreateUser,
    DropNamespace,
    DropStorage,
    DropUser,
    FlushAll,
    FlushTable,
    KillJob,
    ShowManifest,
    ShowNamespaces,
    ShowStorages,
    UseNamespace,
)

# --- namespaces ----------------------------------------------------------------------------


def parse_create_namespace(cur: Cursor) -> CreateNamespace:
    """``[IF NOT EXISTS] name`` with the full §3.2 name rules."""
    if_not_exists = cur.accept("IF", "NOT", "EXISTS")
    name = cur.checked_name("Namespace", definition_problem)
    cur.expect_end()
    return CreateNamespace(name, if_not_exists)


def parse_drop_namespace(cur: Cursor) -> DropNamespace:
    """``[IF EXISTS] name [CASCADE]``; reserved names are refused."""
    if_exists = cur.accept("IF", "EXISTS")
    token = cur.peek()
    name = cur.checked_name("Namespace", reference_problem)
    if name.lower() in RESERVED_NAMESPACE_NAMES:
        assert token is not None
        raise cur.error_at(f"Namespace '{name}' is reserved and cannot be dropped",
                           token.start, token.end)
    cascade = cur.accept("CASCADE")
    cur.expect_end()
    return DropNamespace(name, if_exists, cascade)


def parse_alter_namespace(cur: Cursor) -> AlterNamespace:
    """``name SET DESCRIPTION [=] '...'``."""
    name = cur.checked_name("Namespace", reference_problem)
    cur.expect("SET", "DESCRIPTION")
    cur.accept("=")
    description = cur.string("a description")
    cur.expect_end()
    return AlterNamespace(name, description)


def parse_show_namespaces(cur: Cursor) -> ShowNamespaces:
    cur.expect_end()
    return ShowNamespaces()


def parse_use_namespace(cur: Cursor) -> UseNamespace:
    """``name`` after USE, USE NAMESPACE or SET NAMESPACE (``=``/``TO`` tolerated)."""
    cur.accept_any("=", "TO")
    name = cur.checked_name("Namespace", reference_problem)
    cur.expect_end()
    return UseNamespace(name)


# --- users ---------------------------------------------------------------------------------


def _user_id(cur: Cursor) -> str:
    token = cur.peek()
    user_id = cur.text_value("a user id")
    problem = user_id_problem(user_id)
    if problem:
        assert token is not None
        raise cur.error_at(problem, token.start, token.end)
    return user_id


def _role(cur: Cursor) -> str:
    token = cur.peek()
    text = cur.text_value("a role")
    role = normalise_role(text)
    if role is None:
        assert token is not None
        raise cur.error_at(f"Invalid role '{text}'. Supported: user, service, dba, system",
                           token.start, token.end)
    return role


def parse_create_user(cur: Cursor) -> CreateUser:
    """``u WITH PASSWORD 'pw' | OAUTH '<json>' | INTERNAL [ROLE r] [EMAIL 'e']``."""
    cur.redact = True
    user_id = _user_id(cur)
    cur.expect("WITH")
    auth_type = cur.accept_any("PASSWORD", "OAUTH", "INTERNAL")
    if auth_type is None:
        raise cur.error("Expected PASSWORD, OAUTH or INTERNAL after WITH")
    password = cur.string("a password") if auth_type == "PASSWORD" else None
    oauth = _oauth(cur) if auth_type == "OAUTH" else None
    role, email = None, None
    while not cur.at_end():
        if role is None and cur.accept("ROLE"):
            role = _role(cur)
        elif email is None and cur.accept("EMAIL"):
            email = cur.string("an email address")
        else:
            raise cur.error("Expected ROLE or EMAIL")
    return CreateUser(user_id, auth_type.lower(), role or "user", email, oauth, password)


def _oauth(cur: Cursor) -> str:
    token = cur.peek()
    text = cur.string("the OAUTH identity")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("provider"), str) \
            or not isinstance(value.get("subject"), str):
        assert token is not None
        raise cur.error_at("OAUTH must be a JSON object with string 'provider' and 'subject'",
                           token.start, token.end)
    return text


def parse_alter_user(cur: Cursor) -> AlterUser:
    """``u SET PASSWORD 'pw' | SET ROLE r | SET EMAIL 'e'`` (one change per statement)."""
    cur.redact = True
    user_id = _user_id(cur)
    cur.expect("SET")
    change = cur.accept_any("PASSWORD", "ROLE", "EMAIL")
    if change == "PASSWORD":
        result = AlterUser(user_id, password=cur.string("a password"))
    elif change == "ROLE":
        result = AlterUser(user_id, role=_role(cur))
    elif change == "EMAIL":
        result = AlterUser(user_id, email=cur.string("an email address"))
    else:
        raise cur.error("Expected PASSWORD, ROLE or EMAIL after SET")
    cur.expect_end()
    return result


def parse_drop_user(cur: Cursor) -> DropUser:
    """``[IF EXISTS] u``."""
    if_exists = cur.accept("IF", "EXISTS")
    user_id = _user_id(cur)
    cur.expect_end()
    return DropUser(user_id, if_exists)


# --- storage -------------------------------------------------------------------------------

STORAGE_TYPES = ("filesystem", "s3", "gcs", "azure")
# Storage clause table: keyword -> field of CreateStorage/AlterStorage.
STORAGE_CLAUSES = {
    "TYPE": "storage_type", "NAME": "name", "DESCRIPTION": "description",
    "PATH": "base_directory", "BASE_DIRECTORY": "base_directory", "BUCKET": "bucket",
    "REGION": "region", "SHARED_TABLES_TEMPLATE": "shared_tables_template",
    "USER_TABLES_TEMPLATE": "user_tables_template", "CREDENTIALS": "credentials",
    "CONFIG": "config",
}
JSON_CLAUSES = ("CREDENTIALS", "CONFIG")


def _storage_id(cur: Cursor) -> str:
    token = cur.peek()
    if token is not None and token.kind is TokenKind.WORD:
        storage_id = cur.identifier("a storage id")
    else:
        storage_id = cur.text_value("a storage id")
    problem = storage_id_problem(storage_id)
    if problem:
        assert token is not None
        raise cur.error_at(problem, token.start, token.end)
    return storage_id


def _storage_clause(cur: Cursor, fields: dict[str, str]) -> None:
    token = cur.peek()
    keyword = token.upper if token is not None else ""
    field_name = STORAGE_CLAUSES.get(keyword)
    if field_name is None:
        raise cur.error("Expected a storage clause (" + ", ".join(STORAGE_CLAUSES) + ")")
    if field_name in fields:
        raise cur.error(f"{keyword} is given twice")
    cur.index += 1
    cur.accept("=")
    value_token = cur.peek()
    value = cur.text_value(keyword) if keyword == "TYPE" else cur.string(keyword)
    assert value_token is not None
    if keyword == "TYPE":
        value = value.lower()
        if value not in STORAGE_TYPES:
            raise cur.error_at(f"Invalid storage type '{value}'. Supported: "
                               + ", ".join(STORAGE_TYPES), value_token.start, value_token.end)
    if keyword in JSON_CLAUSES and not _is_json_object(value):
        raise cur.error_at(f"{keyword} must be a JSON object", value_token.start, value_token.end)
    fields[field_name] = value


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


def parse_create_storage(cur: Cursor) -> CreateStorage:
    """``id TYPE 't' [clause 'v' ...]`` in any order (``STORAGE_CLAUSES``)."""
    cur.redact = True
    storage_id = _storage_id(cur)
    fields: dict[str, str] = {}
    while not cur.at_end():
        _storage_clause(cur, fields)
    storage_type = fields.pop("storage_type", None)
    if storage_type is None:
        raise cur.error("CREATE STORAGE requires TYPE 'filesystem|s3|gcs|azure'")
    return CreateStorage(storage_id, storage_type, **fields)


def parse_alter_storage(cur: Cursor) -> AlterStorage:
    """``id SET clause 'v' [, clause 'v' | SET clause 'v']...``; TYPE cannot change."""
    cur.redact = True
    storage_id = _storage_id(cur)
    cur.expect("SET")
    fields: dict[str, str] = {}
    while True:
        if cur.looking_at("TYPE"):
            raise cur.error("The TYPE of a storage cannot be changed")
        _storage_clause(cur, fields)
        if cur.at_end():
            break
        if cur.accept(","):
            cur.accept("SET")
        else:
            cur.expect("SET")
    return AlterStorage(storage_id, **fields)


def parse_drop_storage(cur: Cursor) -> DropStorage:
    if_exists = cur.accept("IF", "EXISTS")
    storage_id = _storage_id(cur)
    cur.expect_end()
    return DropStorage(storage_id, if_exists)


def parse_show_storages(cur: Cursor) -> ShowStorages:
    cur.expect_end()
    return ShowStorages()


def parse_check_storage(cur: Cursor) -> CheckStorage:
    """``id [EXTENDED]`` after STORAGE CHECK."""
    storage_id = _storage_id(cur)
    extended = cur.accept("EXTENDED")
    cur.expect_end()
    return CheckStorage(storage_id, extended)


def parse_flush_table(cur: Cursor) -> FlushTable:
    namespace, name = cur.qualified_name("Table")
    cur.expect_end()
    return FlushTable(namespace, name)


def parse_compact_table(cur: Cursor) -> CompactTable:
    namespace, name = cur.qualified_name("Table")
    cur.expect_end()
    return CompactTable(namespace, name)


def _in_namespace(cur: Cursor) -> str | None:
    namespace = None
    if cur.accept("IN"):
        cur.accept("NAMESPACE")
        namespace = cur.checked_name("Namespace", reference_problem)
    cur.expect_end()
    return namespace


def parse_flush_all(cur: Cursor) -> FlushAll:
    """``[IN [NAMESPACE] ns]`` after STORAGE FLUSH ALL."""
    return FlushAll(_in_namespace(cur))


def parse_compact_all(cur: Cursor) -> CompactAll:
    """``[IN [NAMESPACE] ns]`` after STORAGE COMPACT ALL."""
    return CompactAll(_in_namespace(cur))


def parse_show_manifest(cur: Cursor) -> ShowManifest:
    cur.accept("CACHE")
    cur.expect_end()
    return ShowManifest()


def parse_kill_job(cur: Cursor) -> KillJob:
    """``'id'`` (or a bare id) after KILL JOB."""
    job_id = cur.text_value("a job id")
    cur.expect_end()
    return KillJob(job_id)
