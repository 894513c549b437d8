"""The per-statement context handlers receive, and the two write paths they use.

``Ctx.write_rows`` runs a row-changing step inside the batch's transaction (explicit BEGIN)
or an autocommit transaction of its own; ``Ctx.write_catalog`` appends one catalog event.
Both take the engine's write lock, so events are queued in log order; a row commit releases
it once its event is queued and waits for durability without it (``Engine.commit_rows``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..catalog import SYSTEM_NAMESPACE, TableDef
from ..errors import InvalidOperation, NotFound, TableNotFound
from ..events import CatalogEvent
from ..session import Session

if TYPE_CHECKING:
    from ..engine import Engine, Transaction

T = TypeVar("T")


@dataclass(slots=True)
class Ctx:
    engine: Engine
    session: Session  # effective: the EXECUTE AS target (role user), else the caller
    actor: Session  # the authenticated caller
    params: list[Any]
    txn: Transaction | None = None  # the explicit transaction open in this batch
    # Batched params (an array of arrays): one INSERT … VALUES row instantiated per inner array.
    param_rows: list[list[Any]] | None = None

    @property
    def impersonating(self) -> bool:
        return self.session.user_id != self.actor.user_id or self.session.role != self.actor.role

    def now_ms(self) -> int:
        return self.engine.clock.now_ms()

    def namespace_of(self, namespace: str | None) -> str:
        return (namespace or self.session.namespace).lower()

    def table(self, namespace: str | None, name: str) -> TableDef:
        """The table, or TableNotFound with the protocol's wording."""
        ns = self.namespace_of(namespace)
        table = self.engine.catalog.table(ns, name)
        if table is None:
            raise TableNotFound(f"Table '{ns}.{name.lower()}' does not exist")
        return table

    def require_namespace(self, namespace: str) -> None:
        if namespace == SYSTEM_NAMESPACE:
            return
        if namespace not in self.engine.catalog.namespaces:
            raise NotFound(f"Namespace '{namespace}' does not exist")

    async def write_rows(self, step: Callable[[Transaction], Awaitable[T]]) -> T:
        """Runs ``step`` with a transaction to add tentative changes to, then commits them
        (autocommit) — or leaves them in the batch's open explicit transaction."""
        from ..engine import Transaction

        if self.txn is not None:
            return await step(self.txn)
        engine = self.engine
        await engine.write_lock.acquire()
        txn = Transaction()
        try:
            result = await step(txn)
        except BaseException:
            engine.abort_rows(txn)
            engine.write_lock.release()
            raise
        # Pipelined: the lock is released once the event is queued, so the next statement's
        # event can share this one's fsync (see engine/engine.py).
        await engine.commit_rows(txn, self.session.user_id, unlock=True)
        return result

    async def write_catalog(self, build: Callable[[], CatalogEvent | None]) -> int | None:
        """Builds (under the write lock, against the current catalog) and commits one catalog
        event; ``build`` returns None when there is nothing to write (IF [NOT] EXISTS)."""
        if self.txn is not None:
            raise InvalidOperation("DDL statements are not allowed inside a transaction; "
                                   "COMMIT or ROLLBACK first")
        async with self.engine.write_lock:
            await self.engine.settle()  # DDL sees every earlier row commit published
            event = build()
            if event is None:
                return None
            return await self.engine.commit_catalog(event)
