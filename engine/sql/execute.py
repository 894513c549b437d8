"""A request's SQL batch, end to end (PROTOCOL §1.3 steps 4-9 and the batch semantics).

Order: size limit → split → unwrap EXECUTE AS + classify every statement → classify-time role
checks → parameter checks → ``PARAMS_WITH_BATCH`` → run the statements in order. The first
failure aborts the batch: earlier autocommit statements stay applied, an open transaction is
rolled back, and the error carries the failing statement's 1-based index and text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import (
    EmptySql,
    EngineError,
    InvalidParameter,
    InvalidSql,
    ParamsWithBatch,
    TransactionError,
)
from ..permissions import impersonated
from ..session import Session
from .classify import classify, classify_whole
from .context import Ctx
from .lexer import Token
from .plan import handler_for, preflight
from .results import StatementResult, message_result, sum_dml
from .split import split_with_tokens, unwrap_with_tokens
from .statements import (
    BeginTransaction,
    CommitTransaction,
    Insert,
    InsertValues,
    RollbackTransaction,
    Statement,
    UseNamespace,
)

if TYPE_CHECKING:
    from ..engine import Engine


@dataclass(frozen=True, slots=True)
class Planned:
    index: int  # 1-based
    text: str
    statement: Statement
    execute_as: str | None


async def execute_batch(engine: Engine, session: Session, sql: str, params: list[Any]
                        ) -> list[StatementResult]:
    limit = engine.config.sql_text_max_bytes
    try:
        size = len(sql.encode())
    except UnicodeEncodeError:  # a lone UTF-16 surrogate, e.g. "\ud800" in the JSON body
        raise InvalidSql("SQL text is not valid Unicode (it holds a lone surrogate)") from None
    if size > limit:
        raise InvalidSql(f"SQL query too long: {size} bytes (maximum {limit} bytes)")
    planned = _plan_whole(sql, session)
    if planned is None:
        pieces = split_with_tokens(sql)  # the request is tokenized once
        if not pieces:
            raise EmptySql("No SQL statements provided")
        planned = [_plan(i + 1, text, tokens, session)
                   for i, (text, tokens) in enumerate(pieces)]
    param_rows = _batched_params(params, planned, engine)
    if param_rows is None:
        _check_params(params, engine)
    if params and len(planned) > 1:
        raise ParamsWithBatch("Parameters are not supported with multiple statements")
    results = await _run(engine, session, planned, [] if param_rows else params, param_rows)
    if len(planned) == 1:
        return results
    return sum_dml(results, session.user_id)


def _plan(index: int, text: str, tokens: list[Token] | None, session: Session) -> Planned:
    try:
        target, inner, inner_tokens = unwrap_with_tokens(text, tokens)
        statement = classify(inner, inner_tokens)
        preflight(statement, session if target is None else session.impersonating(target))
    except EngineError as exc:
        _locate(exc, index, text, phase="classify")
        raise
    return Planned(index, text, statement, target)


def _plan_whole(sql: str, session: Session) -> list[Planned] | None:
    """The plan of a request that is one hot statement (``classify_whole``: a cached text,
    or a literal INSERT read in one pass), without splitting; None for the general route."""
    whole = classify_whole(sql)
    if whole is None:
        return None
    text, statement = whole
    try:
        preflight(statement, session)
    except EngineError as exc:
        _locate(exc, 1, text, phase="classify")
        raise
    return [Planned(1, text, statement, None)]


def _batched_params(params: list[Any], planned: list[Planned], engine: Engine
                    ) -> list[list[Any]] | None:
    """``params`` as an array of arrays: a single INSERT … VALUES executed once per inner
    array, all rows in one transaction (one WAL event). None when params are plain."""
    if not params or not all(isinstance(row, list) for row in params):
        return None  # plain params: a nested array among them is reported as invalid
    if len(planned) != 1 or not isinstance(planned[0].statement, Insert | InsertValues):
        raise InvalidParameter("Batched params (an array of arrays) are only supported for a "
                               "single INSERT … VALUES statement")
    if len(params) > engine.config.param_rows_max:
        raise InvalidParameter(f"Too many parameter rows: {len(params)} (maximum "
                               f"{engine.config.param_rows_max})")
    for row in params:
        _check_params(row, engine)
    return params


def _check_params(params: list[Any], engine: Engine) -> None:
    config = engine.config
    if len(params) > config.params_max:
        raise InvalidParameter(f"Too many parameters: {len(params)} (maximum "
                               f"{config.params_max})")
    for k, value in enumerate(params, start=1):
        if value is not None and not isinstance(value, bool | int | float | str):
            raise InvalidParameter(f"Parameter ${k} invalid: only null, boolean, number and "
                                   f"string values are allowed")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidParameter(f"Parameter ${k} invalid: not a finite number")
        if isinstance(value, int) and not isinstance(value, bool) and \
                not -(2**63) <= value < 2**63:
            raise InvalidParameter(f"Parameter ${k} invalid: integer out of the 64-bit range")
        if isinstance(value, str):
            try:
                size = len(value.encode())
            except UnicodeEncodeError:
                raise InvalidParameter(f"Parameter ${k} invalid: not valid Unicode (a lone "
                                       f"surrogate)") from None
            if size > config.param_value_max_bytes:
                raise InvalidParameter(f"Parameter ${k} invalid: larger than "
                                       f"{config.param_value_max_bytes} bytes")


async def _run(engine: Engine, session: Session, planned: list[Planned], params: list[Any],
               param_rows: list[list[Any]] | None) -> list[StatementResult]:
    results: list[StatementResult] = []
    transaction_start = 0
    current = session
    batch = _BatchTransaction(engine)
    try:
        for item in planned:
            try:
                ctx = Ctx(engine, _effective(engine, current, item), current, params, batch.txn,
                          param_rows)
                result = await _statement(ctx, item.statement, batch)
            except EngineError as exc:
                _locate(exc, item.index, item.text, phase="execute")
                raise
            if isinstance(item.statement, UseNamespace):
                current = current.with_namespace(item.statement.name)
            if isinstance(item.statement, BeginTransaction):
                transaction_start = len(results)
            elif isinstance(item.statement, RollbackTransaction):
                # Rolled-back writes are not counted in the batch's DML sums.
                results[transaction_start:] = [r for r in results[transaction_start:]
                                               if r.dml is None]
            if result is not None:
                results.append(result)
        if batch.txn is not None:
            raise TransactionError("Request completed with an open explicit transaction; "
                                   "rolled back automatically")
    finally:
        batch.abort_if_open()
    return results


def _effective(engine: Engine, session: Session, item: Planned) -> Session:
    if item.execute_as is None:
        return session
    return impersonated(engine.catalog, session, item.execute_as)


async def _statement(ctx: Ctx, statement: Statement, batch: _BatchTransaction
                     ) -> StatementResult | None:
    if isinstance(statement, BeginTransaction):
        await batch.begin()
        return message_result(ctx.session.user_id, "Transaction started")
    if isinstance(statement, CommitTransaction):
        await batch.commit(ctx.session.user_id)
        return message_result(ctx.session.user_id, "Transaction committed")
    if isinstance(statement, RollbackTransaction):
        batch.rollback()
        return message_result(ctx.session.user_id, "Transaction rolled back")
    return await handler_for(statement)(ctx, statement)


class _BatchTransaction:
    """The explicit transaction of one batch: BEGIN takes the engine's write lock (and waits
    for queued commits to settle) and keeps it until COMMIT/ROLLBACK (or the end of the
    batch), so its writes commit as one event; COMMIT releases it once the event is queued."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.txn = None

    async def begin(self) -> None:
        from ..engine import Transaction

        if self.txn is not None:
            raise TransactionError("A transaction is already open")
        await self.engine.write_lock.acquire()
        try:
            # Its reads see the writer's state: nothing of other statements that is not
            # yet durable may be in it.
            await self.engine.settle()
        except BaseException:
            self.engine.write_lock.release()
            raise
        self.txn = Transaction(explicit=True)

    async def commit(self, actor: str) -> None:
        if self.txn is None:
            raise TransactionError("COMMIT without an open transaction")
        txn, self.txn = self.txn, None
        await self.engine.commit_rows(txn, actor, unlock=True)  # releases the lock

    def rollback(self) -> None:
        if self.txn is None:
            raise TransactionError("ROLLBACK without an open transaction")
        self.abort_if_open()

    def abort_if_open(self) -> None:
        if self.txn is not None:
            txn, self.txn = self.txn, None
            self.engine.abort_rows(txn)
            self.engine.write_lock.release()


def _locate(exc: EngineError, index: int, text: str, *, phase: str) -> None:
    """Records which statement failed and in which phase ("classify": before anything ran;
    "execute": a runtime failure, which the API prefixes with ``Statement <n> failed:``); the
    text is shown to admins only."""
    if getattr(exc, "statement_index", None) is None:
        exc.statement_index = index  # type: ignore[attr-defined]
        exc.statement_sql = text  # type: ignore[attr-defined]
        exc.phase = phase  # type: ignore[attr-defined]



