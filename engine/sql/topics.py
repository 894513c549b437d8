"""Topic statements (PROTOCOL §3.13): CREATE / ALTER … ADD SOURCE / DROP / CLEAR TOPIC,
CONSUME and ACK. Role checks ran at classify time (``plan.PREFLIGHT``: admin for DDL,
service and above for CONSUME/ACK); the runtime lives in ``engine/topics/``.

Choices where the spec is silent:
- Topic ids are ``namespace.name``, lower-cased; at most ``TOPIC_PARTITIONS_MAX`` partitions.
- ADD SOURCE does not require the table to exist (as the reference), but when it does, the
  WHERE condition is compiled against it now, so a bad condition fails the statement.
- CONSUME without FROM starts at LATEST (the HTTP default); without GROUP it is a stateless
  read of partition 0; with GROUP it takes claims like HTTP consume and then acks the last
  returned offset (auto-ack).
- DROP TOPIC removes the topic, its group offsets, claims and persisted index at once.
"""

from __future__ import annotations

import pyarrow as pa
import trio

from ..catalog import DEFAULT_NAMESPACE
from ..errors import AlreadyExists, InvalidOperation
from ..events import CatalogEvent, Kind
from ..topics.persist import remove_topic_files
from ..topics.where import compile_where
from ..types import KalamType
from . import statements as s
from .context import Ctx
from .results import StatementResult, message_result, rows_result

# Each partition is an index, a long-poll event and a persisted file.
TOPIC_PARTITIONS_MAX = 1024
# PROTOCOL §3.13: CONSUME returns at most 100 messages unless LIMIT says otherwise.
CONSUME_LIMIT_DEFAULT = 100

_CONSUME_COLUMNS = [("topic_id", "Text"), ("partition_id", "Int"), ("offset", "BigInt"),
                    ("key", "Text"), ("payload", "Bytes"), ("timestamp_ms", "BigInt"),
                    ("user_id", "Text"), ("op", "Text")]
_ACK_COLUMNS = [("topic", "Text"), ("group_id", "Text"), ("partition", "Int"),
                ("committed_offset", "BigInt")]


def _topic_id(namespace: str, name: str) -> str:
    return f"{namespace.lower()}.{name.lower()}"


async def create_topic(ctx: Ctx, stmt: s.CreateTopic) -> StatementResult:
    topic_id = _topic_id(stmt.namespace, stmt.name)
    if not 1 <= stmt.partitions <= TOPIC_PARTITIONS_MAX:
        raise InvalidOperation(f"PARTITIONS must be within 1..{TOPIC_PARTITIONS_MAX}")

    def build() -> CatalogEvent:
        ctx.require_namespace(stmt.namespace.lower())
        if ctx.engine.catalog.topics.topic(topic_id) is not None:
            raise AlreadyExists(f"Topic '{topic_id}' already exists")
        return CatalogEvent(Kind.TOPIC_CREATED, {
            "topic_id": topic_id, "namespace": stmt.namespace.lower(),
            "name": stmt.name.lower(), "partitions": stmt.partitions,
            "created_at_ms": ctx.now_ms(),
            "retention_seconds": ctx.engine.config.topic_retention_seconds_default,
            "retention_max_bytes": ctx.engine.config.topic_retention_max_bytes_default})

    await ctx.write_catalog(build)
    return message_result(ctx.session.user_id,
                          f"Created topic '{topic_id}' with {stmt.partitions} partition(s)")


async def add_topic_source(ctx: Ctx, stmt: s.AddTopicSource) -> StatementResult:
    topic_id = _topic_id(stmt.namespace, stmt.name)
    namespace = (stmt.source_namespace or DEFAULT_NAMESPACE).lower()
    table_name = stmt.source_table.lower()

    def build() -> CatalogEvent:
        topic = ctx.engine.topics.topic(topic_id)
        if any((r.namespace, r.table, r.op) == (namespace, table_name, stmt.operation)
               for r in topic.routes):
            raise AlreadyExists(f"Topic '{topic_id}' already has a source "
                                f"'{namespace}.{table_name}' ON {stmt.operation.upper()}")
        table = ctx.engine.catalog.table(namespace, table_name)
        if table is not None and stmt.where is not None:
            compile_where(stmt.where, table)  # raises InvalidSql for a bad condition
        return CatalogEvent(Kind.TOPIC_SOURCE_ADDED, {
            "topic_id": topic_id, "namespace": namespace, "table": table_name,
            "op": stmt.operation, "where": stmt.where, "payload": stmt.payload,
            "updated_at_ms": ctx.now_ms()})

    await ctx.write_catalog(build)
    return message_result(ctx.session.user_id,
                          f"Added source '{namespace}.{table_name}' ON "
                          f"{stmt.operation.upper()} to topic '{topic_id}'")


async def drop_topic(ctx: Ctx, stmt: s.DropTopic) -> StatementResult:
    topic_id = _topic_id(stmt.namespace, stmt.name)

    def build() -> CatalogEvent:
        ctx.engine.topics.topic(topic_id)
        return CatalogEvent(Kind.TOPIC_DROPPED, {"topic_id": topic_id})

    await ctx.write_catalog(build)
    ctx.engine.topics.forget(topic_id)
    await trio.to_thread.run_sync(remove_topic_files, ctx.engine.data_dir, topic_id)
    return message_result(ctx.session.user_id, f"Dropped topic '{topic_id}'")


async def clear_topic(ctx: Ctx, stmt: s.ClearTopic) -> StatementResult:
    """Releases every message published so far; offsets keep counting from there."""
    topic_id = _topic_id(stmt.namespace, stmt.name)

    def build() -> CatalogEvent:
        topic = ctx.engine.topics.topic(topic_id)
        parts = ctx.engine.topics.index.partitions(topic)
        return CatalogEvent(Kind.TOPIC_CLEARED, {
            "topic_id": topic_id, "offsets": [p.high_water for p in parts],
            "updated_at_ms": ctx.now_ms()})

    await ctx.write_catalog(build)
    return message_result(ctx.session.user_id, f"Cleared topic '{topic_id}'")


async def consume(ctx: Ctx, stmt: s.ConsumeTopic) -> StatementResult:
    topic_id = _topic_id(stmt.namespace, stmt.name)
    topics = ctx.engine.topics
    result = await topics.consume(ctx.session, topic_id, stmt.group, 0,
                                  stmt.start if stmt.start is not None else "latest",
                                  stmt.limit or CONSUME_LIMIT_DEFAULT)
    if stmt.group is not None and result.messages:
        await topics.ack(ctx.session, topic_id, stmt.group, 0, result.messages[-1].offset)
    rows = [[m.topic_id, m.partition_id, m.offset, m.key, m.payload, m.timestamp_ms,
             m.user_id, m.op] for m in result.messages]
    return _rows(ctx, _CONSUME_COLUMNS, rows)


async def ack(ctx: Ctx, stmt: s.AckTopic) -> StatementResult:
    topic_id = _topic_id(stmt.namespace, stmt.name)
    offset = await ctx.engine.topics.ack(ctx.session, topic_id, stmt.group, stmt.partition,
                                         stmt.offset)
    return _rows(ctx, _ACK_COLUMNS, [[topic_id, stmt.group, stmt.partition, offset]])


def _rows(ctx: Ctx, columns: list[tuple[str, str]], rows: list[list]) -> StatementResult:
    types = [KalamType(kind) for _, kind in columns]
    arrays = [pa.array([row[i] for row in rows], t.arrow_type()) for i, t in enumerate(types)]
    table = pa.Table.from_arrays(arrays, names=[name for name, _ in columns])
    return rows_result(ctx.session.user_id, table, types)
