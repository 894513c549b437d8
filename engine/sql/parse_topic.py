"""Topic and live-query statements (PROTOCOL.md §3.13, §3.14).

Each ``parse_*`` function takes a cursor positioned just after the statement's leading keywords
and returns a statement from ``statements.py``, or raises ``InvalidSql(at_classify=True)``.

Choices where the spec is silent:

- A topic name must be namespace-qualified in every topic statement (not only CREATE TOPIC).
- CONSUME's clauses (GROUP, FROM, LIMIT) may come in any order, each once.
- WHERE conditions (ALTER TOPIC ... ADD SOURCE, SUBSCRIBE TO) are kept as text, after checking
  that sqlglot parses them as a PostgreSQL expression.
- SUBSCRIBE options: ``OPTIONS (key = value, ...)``, keys lower-cased, values int, TRUE/FALSE
  as bool, anything else as the string / word.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from engine.errors import InvalidSql
from engine.sql.cursor import Cursor
from engine.sql.lexer import TokenKind
from engine.sql.names import definition_problem
from engine.sql.parse_table import option_value
from engine.sql.statements import (
    AckTopic,
    AddTopicSource,
    ClearTopic,
    ConsumeTopic,
    CreateTopic,
    DropTopic,
    KillLiveQuery,
    Subscribe,
)

TOPIC_OPERATIONS = ("INSERT", "UPDATE", "DELETE")
PAYLOAD_MODES = ("key", "full", "diff")


def _topic_name(cur: Cursor, *, defining: bool = False) -> tuple[str, str]:
    token = cur.peek()
    if defining:
        namespace, name = cur.qualified_name("Topic", definition_problem)
    else:
        namespace, name = cur.qualified_name("Topic")
    if namespace is None:
        assert token is not None
        raise cur.error_at("Topic name must be namespace-qualified (namespace.topic)",
                           token.start, token.end)
    return namespace, name


def parse_create_topic(cur: Cursor) -> CreateTopic:
    """``ns.name [PARTITIONS n]`` (n >= 1, default 1)."""
    namespace, name = _topic_name(cur, defining=True)
    partitions = 1
    if cur.accept("PARTITIONS"):
        cur.accept("=")
        partitions = cur.integer("the partition count", minimum=1)
    cur.expect_end()
    return CreateTopic(namespace, name, partitions)


def parse_alter_topic(cur: Cursor) -> AddTopicSource:
    """``ns.name ADD SOURCE [ns.]table ON INSERT|UPDATE|DELETE [WHERE e] [WITH (payload=..)]``."""
    namespace, name = _topic_name(cur)
    cur.expect("ADD", "SOURCE")
    source_namespace, source_table = cur.qualified_name("Table")
    cur.expect("ON")
    operation = cur.accept_any(*TOPIC_OPERATIONS)
    if operation is None:
        raise cur.error("Expected INSERT, UPDATE or DELETE after ON")
    where = None
    if cur.accept("WHERE"):
        where = _condition(cur, lambda c: c.looking_at("WITH", "("))
    payload = "full"
    if cur.accept("WITH"):
        payload = _payload_option(cur)
    cur.expect_end()
    return AddTopicSource(namespace, name, source_namespace, source_table, operation.lower(),
                          where, payload)


def _payload_option(cur: Cursor) -> str:
    cur.expect("(")
    key_token = cur.peek()
    key = cur.text_value("a source option name").lower()
    if key != "payload":
        assert key_token is not None
        raise cur.error_at(f"Unknown topic source option '{key}'", key_token.start, key_token.end)
    cur.expect("=")
    value_token = cur.peek()
    payload = cur.text_value("a payload mode").lower()
    if payload not in PAYLOAD_MODES:
        assert value_token is not None
        raise cur.error_at(f"Invalid payload mode '{payload}'. Supported: key, full, diff",
                           value_token.start, value_token.end)
    cur.expect(")")
    return payload


def _condition(cur: Cursor, stop: Callable[[Cursor], bool]) -> str:
    """The text of a WHERE condition up to ``stop`` (at depth 0) or the end, checked to parse."""
    start_token = cur.peek()
    if start_token is None:
        raise cur.error("Expected a condition after WHERE")
    end = cur.balanced_end(stop)
    text = cur.sql[start_token.start:end]
    try:
        sqlglot.parse_one(text, read="postgres", into=exp.Condition)
    except (ParseError, TokenError) as exc:
        errors = getattr(exc, "errors", None) or []
        raise InvalidSql(f"Invalid WHERE condition '{text}'", at_classify=True,
                         parse_errors=errors) from exc
    return text


def parse_drop_topic(cur: Cursor) -> DropTopic:
    namespace, name = _topic_name(cur)
    cur.expect_end()
    return DropTopic(namespace, name)


def parse_clear_topic(cur: Cursor) -> ClearTopic:
    namespace, name = _topic_name(cur)
    cur.expect_end()
    return ClearTopic(namespace, name)


def parse_consume(cur: Cursor) -> ConsumeTopic:
    """``ns.name [GROUP 'g'] [FROM LATEST|EARLIEST|n] [LIMIT n]`` (after CONSUME FROM)."""
    namespace, name = _topic_name(cur)
    group: str | None = None
    start: str | int | None = None
    limit: int | None = None
    while not cur.at_end():
        if group is None and cur.accept("GROUP"):
            group = cur.text_value("a consumer group")
        elif start is None and cur.accept("FROM"):
            position = cur.accept_any("LATEST", "EARLIEST")
            start = position.lower() if position else cur.integer("a start offset")
        elif limit is None and cur.accept("LIMIT"):
            limit = cur.integer("the limit", minimum=1)
        else:
            raise cur.error("Expected GROUP, FROM or LIMIT")
    return ConsumeTopic(namespace, name, group, start, limit)


def parse_ack(cur: Cursor) -> AckTopic:
    """``ns.name GROUP 'g' [PARTITION p] UPTO OFFSET n``."""
    namespace, name = _topic_name(cur)
    cur.expect("GROUP")
    group = cur.text_value("a consumer group")
    partition = 0
    if cur.accept("PARTITION"):
        partition = cur.integer("the partition")
    cur.expect("UPTO", "OFFSET")
    offset = cur.integer("the offset")
    cur.expect_end()
    return AckTopic(namespace, name, group, offset, partition)


# --- live queries --------------------------------------------------------------------------


def parse_subscribe(cur: Cursor) -> Subscribe:
    """``[ns.]table [WHERE e] [OPTIONS (k = v, ...)]`` (after SUBSCRIBE TO)."""
    namespace, table = cur.qualified_name("Table")
    where = None
    if cur.accept("WHERE"):
        where = _condition(cur, lambda c: c.looking_at("OPTIONS", "("))
    options: dict[str, object] = {}
    if cur.accept("OPTIONS"):
        options = _subscription_options(cur)
    cur.expect_end()
    return Subscribe(namespace, table, where, options)


def _subscription_options(cur: Cursor) -> dict[str, object]:
    cur.expect("(")
    options: dict[str, object] = {}
    while not cur.looking_at(")"):
        key_token = cur.peek()
        key = cur.text_value("an option name").lower()
        if key in options:
            assert key_token is not None
            raise cur.error_at(f"Duplicate subscription option '{key}'",
                               key_token.start, key_token.end)
        cur.expect("=")
        value_token = cur.peek()
        value: object = option_value(cur, f"a value for {key}")
        if value_token is not None and value_token.kind is TokenKind.WORD \
                and str(value).upper() in ("TRUE", "FALSE"):
            value = str(value).upper() == "TRUE"
        options[key] = value
        if not cur.accept(","):
            break
    cur.expect(")")
    return options


def parse_kill_live_query(cur: Cursor) -> KillLiveQuery:
    """``'live_id'`` after KILL LIVE QUERY."""
    live_id = cur.text_value("a live query id")
    cur.expect_end()
    return KillLiveQuery(live_id)
