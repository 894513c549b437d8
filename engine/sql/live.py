"""SUBSCRIBE TO and KILL LIVE QUERY (PROTOCOL §3.14).

``SUBSCRIBE TO [ns.]table [WHERE e] [OPTIONS (...)]`` registers nothing: it checks the
subscription the client would make (same rules as the WebSocket ``subscribe``) and returns
one row — ``status`` "active", ``ws_url`` (this server's real ``/v1/ws``, a decisions-table
choice), ``subscription`` (JSON ``{"id":"sub-<ns>-<table>-<uuid>","sql":"SELECT ..."}``, plus
``options`` when given) and ``message``.

``KILL LIVE QUERY '<user>-<connection>-<subscription>'`` (admin only, checked in plan.py's
PREFLIGHT) unregisters it; the client is not told (as in the reference). Unknown id →
``NotFound``.
"""

from __future__ import annotations

import json
import uuid

import pyarrow as pa

from ..errors import InvalidSql, NotFound, PermissionDenied, TableNotFound
from ..live import LiveQueryError, compile_live_query
from ..types import KalamType
from .context import Ctx
from .results import StatementResult, message_result, rows_result
from .statements import KillLiveQuery, Subscribe

_TEXT = KalamType("Text")


async def subscribe(ctx: Ctx, statement: Subscribe) -> StatementResult:
    namespace = ctx.namespace_of(statement.namespace)
    sql = f"SELECT * FROM {namespace}.{statement.table}"
    if statement.where:
        sql += f" WHERE {statement.where}"
    try:
        compile_live_query(sql, ctx.session, ctx.engine.catalog)
    except LiveQueryError as exc:
        if exc.code == "NOT_FOUND":
            raise TableNotFound(f"Table '{namespace}.{statement.table}' does not exist") \
                from exc
        if exc.code == "UNAUTHORIZED":
            raise PermissionDenied(exc.message) from exc
        raise InvalidSql(exc.message) from exc
    body = {"id": f"sub-{namespace}-{statement.table}-{uuid.uuid4()}", "sql": sql}
    if statement.options:
        body["options"] = statement.options
    url = ctx.engine.live.ws_url
    table = pa.table({
        "status": ["active"], "ws_url": [url],
        "subscription": [json.dumps(body, separators=(",", ":"))],
        "message": [f"Subscription prepared: connect to {url}, authenticate, then send a "
                    "subscribe message with this id and sql"],
    })
    return rows_result(ctx.session.user_id, table, [_TEXT] * 4)


async def kill_live_query(ctx: Ctx, statement: KillLiveQuery) -> StatementResult:
    if not ctx.engine.live.kill(statement.live_id):
        raise NotFound(f"Live query not found: {statement.live_id}")
    return message_result(ctx.session.user_id, f"Live query killed: {statement.live_id}")
