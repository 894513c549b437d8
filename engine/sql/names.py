"""Naming rules for SQL objects (PROTOCOL.md §2.1, §3.2, §3.3) as pure functions.

Each ``*_problem`` function returns ``None`` for an acceptable name or the error message to
show; the parsers turn a message into ``InvalidSql`` with the name's location.

Two strengths of check:

- a *definition* (CREATE NAMESPACE, CREATE TABLE, a column in CREATE TABLE / ADD COLUMN,
  RENAME ... TO, CREATE TOPIC) gets the full rules;
- a *reference* (a namespace or table named by any other statement, ``USE default``,
  ``system.users``) only has to look like a name (``[A-Za-z0-9_]+``): whether it exists is the
  executor's question, and reserved names such as ``default`` and ``system`` must stay usable.

Name rules per kind:

- namespace: 1-64 of ``[A-Za-z0-9_]``, not starting with ``_`` or a digit, not a reserved SQL
  keyword, not in ``RESERVED_NAMESPACE_NAMES`` (case-insensitive).
- column: the same, except the reserved list is ``RESERVED_COLUMN_NAMES``.
- table and topic: 1-64 of ``[A-Za-z0-9_]`` (§3.3 asks only for the pattern; a leading digit or
  underscore is allowed) and not a reserved SQL keyword.

The keyword check applies to the name whether or not it was quoted (``"select"`` is refused
too), as the reference does.
"""

from __future__ import annotations

import re

# §3.2: longer names are refused; it also bounds catalog keys and file paths built from names.
NAME_MAX_CHARS = 64
# §2.1: the setup/login body caps user ids at 128 bytes; we apply the same cap to SQL.
USER_ID_MAX_BYTES = 128

RESERVED_NAMESPACE_NAMES = frozenset({
    "system", "sys", "root", "kalamdb", "kalam", "main", "default", "sql", "admin", "internal",
    "information_schema", "pg_catalog", "datafusion",
})
SYSTEM_COLUMN_NAMES = frozenset({"_seq", "_deleted"})
RESERVED_COLUMN_NAMES = frozenset({
    "_seq", "_deleted", "_id", "_row_id", "_rowid", "_key", "_updated", "_created",
    "_timestamp", "_version", "_hash",
})
# Curated: words that cannot be a bare table or column name in the PostgreSQL/DataFusion
# grammar (clause keywords, set operators, join words, literals) plus the DDL verbs. Type names
# (date, time, text, json, ...) and words like ``user``, ``name``, ``key`` are deliberately
# absent: they are common column names and parse fine as identifiers.
RESERVED_SQL_KEYWORDS = frozenset({
    "ALL", "ALTER", "ANALYZE", "AND", "ANTI", "ANY", "ARRAY", "AS", "ASC", "ASOF", "BETWEEN",
    "BOTH", "BY", "CASE", "CAST", "CHECK", "CLUSTER", "COLLATE", "COLUMN", "CONNECT",
    "CONSTRAINT", "CREATE", "CROSS", "CURRENT_DATE", "CURRENT_ROLE", "CURRENT_TIME",
    "CURRENT_TIMESTAMP", "CURRENT_USER", "DATABASE", "DEFAULT", "DELETE", "DESC", "DISTINCT",
    "DISTRIBUTE", "DO", "DROP", "ELSE", "END", "EXCEPT", "EXISTS", "EXPLAIN", "FALSE", "FETCH",
    "FOR", "FOREIGN", "FROM", "FULL", "GLOBAL", "GRANT", "GROUP", "HAVING", "ILIKE", "IN",
    "INDEX", "INNER", "INSERT", "INTERSECT", "INTERVAL", "INTO", "IS", "JOIN", "LATERAL",
    "LEADING", "LEFT", "LIKE", "LIMIT", "MINUS", "NATURAL", "NOT", "NULL", "OFFSET", "ON", "OR",
    "ORDER", "OUTER", "PARTITION", "PIVOT", "PRIMARY", "QUALIFY", "REFERENCES", "RETURNING",
    "RIGHT", "SCHEMA", "SELECT", "SEMI", "SET", "SIMILAR", "SOME", "SORT", "STRUCT", "TABLE",
    "TABLES", "TABLESAMPLE", "TABLESPACE", "THEN", "TO", "TOP", "TRAILING", "TRIM", "TRUE",
    "UNION", "UNIQUE", "UNPIVOT", "UPDATE", "USING", "VALUES", "VIEW", "WHEN", "WHERE",
    "WINDOW", "WITH",
})
ROLES = ("user", "service", "dba", "system")

_NAME_CHARS = re.compile(r"[A-Za-z0-9_]+")
_STORAGE_ID = re.compile(r"[A-Za-z0-9_-]+")


def definition_problem(kind: str, name: str) -> str | None:
    """Check a name being defined. ``kind`` is "Namespace", "Table", "Column" or "Topic"."""
    if kind == "Column" and name.lower() in RESERVED_COLUMN_NAMES:
        return f"Column name '{name}' is reserved and cannot be used"
    if kind == "Namespace" and name.lower() in RESERVED_NAMESPACE_NAMES:
        return f"Namespace '{name}' is reserved and cannot be used"
    problem = _shape_problem(kind, name)
    if problem:
        return problem
    if len(name) > NAME_MAX_CHARS:
        return f"{kind} name '{name}' is too long ({len(name)} characters, max {NAME_MAX_CHARS})"
    if kind in ("Namespace", "Column"):
        if name.startswith("_"):
            return f"{kind} name '{name}' cannot start with an underscore"
        if name[0].isdigit():
            return f"{kind} name '{name}' cannot start with a digit"
    if name.upper() in RESERVED_SQL_KEYWORDS:
        return f"{kind} name '{name}' is a reserved SQL keyword"
    return None


def reference_problem(kind: str, name: str) -> str | None:
    """Check a name that refers to an existing object: only its shape."""
    return _shape_problem(kind, name)


def _shape_problem(kind: str, name: str) -> str | None:
    if not name:
        return f"{kind} name cannot be empty"
    if not _NAME_CHARS.fullmatch(name):
        return (f"{kind} name '{name}' contains invalid characters "
                "(only letters, digits and underscores are allowed)")
    return None


def user_id_problem(user_id: str) -> str | None:
    """Check a user id against §2.1: non-empty, no '..', '/', '\\' or NUL, at most 128 bytes."""
    if not user_id:
        return "User id cannot be empty"
    if ".." in user_id or any(ch in user_id for ch in "/\\\0"):
        return "User id cannot contain '..', '/', '\\' or NUL characters"
    size = len(user_id.encode("utf-8"))
    if size > USER_ID_MAX_BYTES:
        return f"User id is too long ({size} bytes, max {USER_ID_MAX_BYTES})"
    return None


def storage_id_problem(storage_id: str) -> str | None:
    """Check a storage id: ``[A-Za-z0-9_-]+`` of at most 64 characters (§3.3 STORAGE_ID)."""
    if not _STORAGE_ID.fullmatch(storage_id):
        return (f"Invalid storage id '{storage_id}' "
                "(only letters, digits, underscores and hyphens are allowed)")
    if len(storage_id) > NAME_MAX_CHARS:
        return f"Storage id '{storage_id}' is too long ({len(storage_id)} characters, max {NAME_MAX_CHARS})"
    return None


def normalise_role(text: str) -> str | None:
    """The lowercase role name for ``text`` (case-insensitive), or None if it is not a role."""
    role = text.lower()
    return role if role in ROLES else None
