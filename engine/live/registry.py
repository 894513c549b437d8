"""The live-query registry: subscriptions by table, fed by the engine's commit path.

``LiveRegistry`` is created by the engine (``engine.live``) and registered as a commit
listener: ``on_commit(event, lsn)`` runs synchronously, in log order, just before the
commit's partitions publish it (so a partition's reader view still holds the versions the
commit replaces — that is where UPDATE old values come from; nothing can observe the
difference because publication is one synchronous step).

For each change of the commit whose table has subscriptions:
- USER/STREAM changes go only to subscriptions of the partition's owner; SHARED changes to
  every subscription on the table (access was checked at subscribe time);
- each subscription's compiled WHERE selects the matching rows of the change's Arrow batch
  (vectorized; one call per subscription and change, never a query);
- the matching rows go to the subscription as a ``Change`` (``Subscription.deliver``:
  buffered while loading, else offered to the connection's bounded outbox; JSON rendering
  happens later in the connection's writer task, not in the commit path).

Cost of UPDATE old values: one ``pyarrow.compute.is_in`` pass over the partition's reader
view (O(rows in the partition), vectorized) per UPDATE change that matched at least one
subscription; nothing when no subscription matches. Cold (flushed) chunks in the view are
read through the segment cache.

Limits (EngineConfig): ``live_subscriptions_per_user_max`` across connections,
``live_subscriptions_per_connection_max``, ``live_load_buffer_changes_max`` per
subscription, ``live_batch_size_max_rows`` per initial page.

Initial load: ``subscribe`` captures the snapshot (references to the partition's chunks);
``initial_job`` filters it in a worker thread into an ``InitialRows`` index — the matching
rows are not copied, pages are cut from the snapshot's batches on demand — so an initial
load holds 16 bytes per matching row beyond the snapshot it pins until it finishes.

Dropped tables: ``table_dropped`` (called by DROP TABLE and DROP NAMESPACE … CASCADE) fails
the table's subscriptions with ``NOT_FOUND``, which removes them from the registry and
``system.live``.

Task safety: trio thread only, except the callables ``initial_job`` returns.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import trio

from ..catalog import SEQ_COLUMN, TableDef
from ..events import Op, RowChange, RowsCommitted
from ..partition import align, storage_schema
from ..query import RowSnapshot, snapshot_rows
from ..session import Session
from .outbox import Outbox
from .query import LiveQuery, LiveQueryError, compile_live_query
from .subscription import Change, InitialRows, Subscription

if TYPE_CHECKING:
    from ..engine import Engine

BATCH_SIZE_DEFAULT_ROWS = 1000  # PROTOCOL §6.5: batch_size defaults to 1000


class LiveRegistry:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.by_id: dict[str, Subscription] = {}
        self.by_table: dict[int, dict[str, Subscription]] = {}
        self.per_user: Counter[str] = Counter()
        self.per_connection: Counter[str] = Counter()
        # Where clients connect (SUBSCRIBE TO's ws_url); the API sets it once bound.
        self.ws_url = "ws://127.0.0.1:2900/v1/ws"

    # ---- registration ---------------------------------------------------------------------

    def subscribe(self, session: Session, connection_id: str, subscription_id: str, sql: str,
                  options: dict[str, Any] | None, outbox: Outbox) -> Subscription:
        """Checks, compiles and registers a subscription; with ``options`` it starts in
        ``loading`` with its snapshot captured in the same synchronous step (call ``load``
        next), without it is ``live`` at once. Raises ``LiveQueryError``."""
        config = self.engine.config
        if self.per_user[session.user_id] >= config.live_subscriptions_per_user_max:
            raise LiveQueryError("SUBSCRIPTION_LIMIT_EXCEEDED", "Maximum subscriptions reached")
        if self.per_connection[connection_id] >= config.live_subscriptions_per_connection_max:
            raise LiveQueryError("UNSUPPORTED", f"Maximum subscriptions "
                                 f"({config.live_subscriptions_per_connection_max}) per "
                                 "connection exceeded")
        batch_size, last_rows, from_seq = _load_options(options, config.live_batch_size_max_rows)
        query = compile_live_query(sql, session, self.engine.catalog)
        now = self.engine.clock.now_ms()
        sub = Subscription(f"{session.user_id}-{connection_id}-{subscription_id}",
                           connection_id, subscription_id, session, sql, query, options,
                           outbox, config.live_load_buffer_changes_max, now,
                           last_update_ms=now, batch_size=batch_size, last_rows=last_rows)
        self._register(sub)
        if options is None:
            sub.state = "live"
            return sub
        sub.snapshot = snapshot_rows(query.table, self.engine.store, session.user_id, now)
        sub.from_seq = from_seq
        return sub

    def _register(self, sub: Subscription) -> None:
        old = self.by_id.get(sub.live_id)
        if old is not None:  # the same id again on one connection: the new one replaces it
            old.close()
        sub.registry = self
        self.by_id[sub.live_id] = sub
        self.by_table.setdefault(sub.query.table.table_id, {})[sub.live_id] = sub
        self.per_user[sub.user_id] += 1
        self.per_connection[sub.connection_id] += 1

    def forget(self, sub: Subscription) -> None:
        """Called by ``Subscription.close``: releases its place and its counts."""
        if self.by_id.get(sub.live_id) is not sub:
            return
        del self.by_id[sub.live_id]
        subs = self.by_table.get(sub.query.table.table_id)
        if subs is not None:
            subs.pop(sub.live_id, None)
            if not subs:
                del self.by_table[sub.query.table.table_id]
        for counter, key in ((self.per_user, sub.user_id),
                             (self.per_connection, sub.connection_id)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    def kill(self, live_id: str) -> bool:
        """KILL LIVE QUERY: unregisters ``live_id``; False if there is no such query."""
        sub = self.by_id.get(live_id)
        if sub is None:
            return False
        sub.close()
        return True

    def close_connection(self, connection_id: str) -> None:
        for sub in [s for s in self.by_id.values() if s.connection_id == connection_id]:
            sub.close()

    def table_dropped(self, table: TableDef) -> None:
        """DROP TABLE / DROP NAMESPACE … CASCADE removed ``table``: each subscription on it
        gets a ``NOT_FOUND`` error (the code of subscribing to an unknown table, §6.5) and
        leaves the registry and ``system.live``."""
        for sub in list(self.by_table.get(table.table_id, {}).values()):
            sub.fail("NOT_FOUND", f"Not found: Table not found: {table.qualified_name} "
                     "(the table was dropped)")

    # ---- initial load ---------------------------------------------------------------------

    def initial_job(self, sub: Subscription) -> Callable[[], InitialRows]:
        """The work of ``sub``'s initial load as a call for a worker thread (pure Arrow over
        the snapshot captured at registration): its matching, not deleted rows with
        ``_seq`` above ``from``, in ``_seq`` order, and the snapshot's high-water mark.
        Hand the result to ``sub.loaded``. Releases the subscription's hold on the
        snapshot (the job keeps it until it ran)."""
        snapshot, query, from_seq = sub.snapshot, sub.query, sub.from_seq
        assert snapshot is not None, "no snapshot: subscribed without options, or loaded"
        sub.snapshot = None
        return functools.partial(initial_rows, snapshot, query, from_seq)

    async def load(self, sub: Subscription) -> None:
        """``initial_job`` in a worker thread, then ``sub.loaded``. Cancellable (the
        subscription stays loading without rows)."""
        sub.loaded(await trio.to_thread.run_sync(self.initial_job(sub)))

    # ---- the commit listener ----------------------------------------------------------------

    def on_commit(self, event: RowsCommitted, lsn: int) -> None:
        """Matches ``event``'s changes against the subscriptions (see the module docstring).
        Never raises for a subscription's sake: a failing one is dropped with an error."""
        if not self.by_table:
            return
        earlier: dict[tuple[int, str | None], list[pa.Table]] = {}
        now = self.engine.clock.now_ms()
        for change in event.changes:
            subs = self.by_table.get(change.table_id)
            table = self.engine.catalog.tables.get(change.table_id)
            if subs and table is not None:
                self._dispatch(change, table, list(subs.values()), earlier, now)
            if change.op != Op.DELETE or table is None or table.table_type != "STREAM":
                earlier.setdefault((change.table_id, change.user_id), []).append(
                    pa.Table.from_batches([change.batch]))

    def _dispatch(self, change: RowChange, table: TableDef, subs: list[Subscription],
                  earlier: dict[tuple[int, str | None], list[pa.Table]], now: int) -> None:
        batch, stream_delete = change.batch, (change.op == Op.DELETE
                                               and table.table_type == "STREAM")
        aligned: pa.Table | None = None
        old: pa.Table | None = None
        # Subscriptions with the same SQL and user match the same rows: evaluate once.
        memo: dict[tuple[str, str], tuple[pa.Table, int, dict[str, Any]] | None] = {}
        for sub in subs:
            if table.is_user_scoped and sub.user_id != change.user_id:
                continue
            key = (sub.sql, sub.user_id)
            if key not in memo:
                try:
                    rows = list(range(batch.num_rows)) if stream_delete else \
                        sub.query.matches(batch)
                except Exception as exc:  # a predicate that cannot evaluate this batch
                    sub.fail("CONVERSION_ERROR", f"Live filter failed: {exc}")
                    continue
                if not rows:
                    memo[key] = None
                    continue
                if aligned is None:
                    data = pa.Table.from_batches([batch])
                    aligned = data if stream_delete else align(data, table)
                if change.op == Op.UPDATE and old is None:
                    old = _previous_versions(self.engine, table, change, aligned,
                                             earlier.get((change.table_id, change.user_id), []))
                picked = aligned if len(rows) == aligned.num_rows else aligned.take(rows)
                memo[key] = (picked, int(pc.max(picked.column(SEQ_COLUMN)).as_py()), {})
            hit = memo[key]
            if hit is not None:
                picked, seq_max, shared = hit
                sub.deliver(Change(sub, change.op, change.user_id, picked, old, seq_max,
                                   shared), now)

    # ---- system.live --------------------------------------------------------------------------

    def rows(self) -> list[tuple[Any, ...]]:
        """system.live rows (PROTOCOL §3.10 column order), times in Unix milliseconds."""
        node = self.engine.config.node_id
        out = []
        for sub in sorted(self.by_id.values(), key=lambda s: s.live_id):
            table = sub.query.table
            out.append((sub.live_id, sub.connection_id, sub.subscription_id, table.namespace,
                        table.name, sub.user_id, sub.sql, sub.options_json,
                        "active" if sub.state == "live" else sub.state, sub.created_ms,
                        sub.last_update_ms, sub.changes, node, sub.last_ping_ms))
        return out


def _load_options(options: dict[str, Any] | None, batch_max: int
                  ) -> tuple[int, int | None, int | None]:
    """(batch_size, last_rows, from) of a subscribe's ``options``; raises ``LiveQueryError``."""
    if options is None:
        return BATCH_SIZE_DEFAULT_ROWS, None, None

    def number(key: str, *aliases: str) -> int | None:
        for name in (key, *aliases):
            value = options.get(name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise LiveQueryError("UNSUPPORTED", f"options.{name} must be an integer")
                return value
        return None

    batch_size = number("batch_size") or BATCH_SIZE_DEFAULT_ROWS
    if not 1 <= batch_size <= batch_max:
        raise LiveQueryError("UNSUPPORTED", f"options.batch_size must be within 1..{batch_max}")
    last_rows = number("last_rows")
    if last_rows is not None and not 0 <= last_rows <= batch_size:
        raise LiveQueryError("UNSUPPORTED", f"options.last_rows ({last_rows}) may not exceed "
                             f"batch_size ({batch_size})")
    return batch_size, last_rows, number("from", "from_seq_id")


def initial_rows(snapshot: RowSnapshot, query: LiveQuery, from_seq: int | None
                 ) -> InitialRows:
    """Any thread: the snapshot's matching rows as an ``InitialRows`` index (nothing copied
    but 16 bytes per matching row), evaluated batch by batch."""
    high = 0
    for part in snapshot.tables:
        if part.num_rows:
            high = max(high, int(pc.max(part.column(SEQ_COLUMN)).as_py()))
    table = snapshot.materialize().rename_columns(storage_schema(query.table).names)
    batches = tuple(b for b in table.to_batches() if b.num_rows)
    chunks, locals_, seqs = [], [], []
    for index, batch in enumerate(batches):
        seq = batch.column(SEQ_COLUMN)
        if query.predicate is None:
            picked = pc.indices_nonzero(pc.is_valid(seq))  # every row
        else:
            picked = pa.array(query.matches(batch), pa.int64())
        if from_seq is not None:
            picked = picked.filter(pc.greater(seq.take(picked), from_seq))
        if len(picked):
            chunks.append(pa.repeat(pa.scalar(index, pa.int32()), len(picked)))
            locals_.append(picked.cast(pa.int64()))
            seqs.append(seq.take(picked))
    if not seqs:
        empty = pa.array([], pa.int64())
        return InitialRows(batches, pa.array([], pa.int32()), empty, empty, table.schema, high)
    chunk, local, seq = (pa.concat_arrays(a) for a in (chunks, locals_, seqs))
    if len(seq) > 1 and not pc.all(pc.greater(seq.slice(1), seq.slice(0, len(seq) - 1))
                                   ).as_py():
        order = pc.sort_indices(seq)
        chunk, local, seq = chunk.take(order), local.take(order), seq.take(order)
    return InitialRows(batches, chunk, local, seq, table.schema, high)


def _previous_versions(engine: Engine, table: TableDef, change: RowChange, new: pa.Table,
                       earlier: list[pa.Table]) -> pa.Table | None:
    """The versions an UPDATE replaced: from earlier changes of the same commit, else the
    partition's reader view (the state before this commit). None without a primary key."""
    pk = table.pk
    if pk is None:
        return None
    part = engine.store.partition(table, change.user_id, create=False)
    sources = [*(part.view() if part is not None else []),
               *(align(t, table) for t in earlier)]
    keys = new.column(pk.storage_name)
    found = [t.filter(pc.is_in(t.column(pk.storage_name), value_set=keys.combine_chunks()))
             for t in sources if t.num_rows]
    found = [t for t in found if t.num_rows]
    if not found:
        return None
    return pa.concat_tables(found).sort_by([(SEQ_COLUMN, "ascending")])
