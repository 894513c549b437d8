"""``sluice replay``: rebuild every projection from the WAL alone, or check that the live
projections equal such a rebuild.

  sluice replay --data-dir D --into NEW   copy D's log to NEW/wal, replay it from LSN 1 with
                                          a progress bar, flush every partition and write
                                          the catalog checkpoint: NEW is a complete data dir
  sluice replay --verify D                rebuild in a temporary directory and compare with
                                          D's projections (checkpoints + segments + log tail,
                                          exactly what a restart loads), row for row

Exit codes: 0 done / identical, 1 differences found, 2 cannot rebuild (the log no longer
starts at LSN 1 because retention released older records, or it is corrupt), 64 usage.
Run --verify against a stopped server (or accept that writes during the copy may show up as
differences); it never writes to D.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import trio

from wal import WalError, iter_frames

from .engine import Engine, open_engine
from .flush import flush_partition
from .query import visible_rows

EXIT_OK, EXIT_DIFFERENT, EXIT_CANNOT, EXIT_USAGE = 0, 1, 2, 64
_PROGRESS_EVERY_EVENTS = 2000


def replay_main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="the data directory to rebuild from")
    parser.add_argument("--into", type=Path, help="a new, empty directory to rebuild into")
    parser.add_argument("--verify", type=Path, metavar="D", help="compare D with a rebuild")
    args = parser.parse_args(argv)
    if (args.verify is None) == (args.data_dir is None or args.into is None):
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"{prog}: give either --data-dir D --into NEW, or --verify D\n")
        return EXIT_USAGE
    try:
        if args.verify is not None:
            return trio.run(_verify, args.verify, prog)
        return trio.run(_rebuild, args.data_dir, args.into, prog)
    except (WalError, OSError, ValueError) as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return EXIT_CANNOT


def _check_source(data_dir: Path) -> int:
    """The log's last LSN; raises ValueError when it cannot be replayed from LSN 1."""
    wal_dir = data_dir / "wal"
    if not wal_dir.is_dir():
        raise ValueError(f"{data_dir} has no wal/ directory")
    first = next(iter_frames(wal_dir), None)
    if first is not None and first.lsn != 1:
        raise ValueError(f"the log starts at LSN {first.lsn}: retention released older "
                         f"records, so projections cannot be rebuilt from the log alone")
    last = 0
    for frame in iter_frames(wal_dir):
        last = frame.lsn
    return last


def _copy_log(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=False)
    shutil.copytree(source / "wal", target / "wal",
                    ignore=shutil.ignore_patterns("LOCK", "*.tmp", "*.broken-*"))


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, prog: str) -> None:
        self.total, self.prog, self.events = max(total, 1), prog, 0

    def __call__(self, lsn: int, rows: int) -> None:
        self.events += 1
        if self.events % _PROGRESS_EVERY_EVENTS == 0 or lsn == self.total:
            done = int(30 * lsn / self.total)
            sys.stderr.write(f"\r{self.prog}: [{'#' * done}{'.' * (30 - done)}] LSN {lsn}/"
                             f"{self.total}, {rows} rows")
            sys.stderr.flush()

    def finish(self) -> None:
        sys.stderr.write("\n")


def _prepare_target(data_dir: Path, into: Path) -> None:
    if into.exists() and any(into.iterdir()):
        raise ValueError(f"{into} is not empty")
    if into.exists():
        into.rmdir()
    _copy_log(data_dir, into)


async def _rebuild(data_dir: Path, into: Path, prog: str) -> int:
    last = await trio.to_thread.run_sync(_check_source, data_dir)
    await trio.to_thread.run_sync(_prepare_target, data_dir, into)
    progress = _Progress(last, prog)
    async with open_engine(into, progress=progress) as engine:
        progress.finish()
        rows = 0
        for part in list(engine.store.partitions.values()):
            rows += await flush_partition(engine, part)
    sys.stdout.write(f"rebuilt {into}: {engine.replay_report.events} events up to LSN "
                     f"{engine.replay_report.last_lsn}, {rows} row versions in segments\n")
    return EXIT_OK


async def _verify(data_dir: Path, prog: str) -> int:
    last = await trio.to_thread.run_sync(_check_source, data_dir)
    with tempfile.TemporaryDirectory(prefix="sluice-verify-") as scratch:
        live_dir, rebuilt_dir = Path(scratch) / "live", Path(scratch) / "rebuilt"
        await trio.to_thread.run_sync(
            lambda: shutil.copytree(data_dir, live_dir, ignore=shutil.ignore_patterns("LOCK")))
        await trio.to_thread.run_sync(_copy_log, data_dir, rebuilt_dir)
        async with open_engine(live_dir) as live:
            progress = _Progress(last, prog)
            async with open_engine(rebuilt_dir, progress=progress) as rebuilt:
                progress.finish()
                differences = compare(live, rebuilt)
    for line in differences:
        sys.stdout.write(f"{line}\n")
    if differences:
        sys.stdout.write(f"{len(differences)} difference(s)\n")
        return EXIT_DIFFERENT
    sys.stdout.write(f"identical: catalog and every partition match a rebuild from the log "
                     f"(LSN 1..{last})\n")
    return EXIT_OK


def compare(live: Engine, rebuilt: Engine) -> list[str]:
    """Human-readable differences between two engines' projections (empty when equal)."""
    out = []
    a, b = _comparable_catalog(live), _comparable_catalog(rebuilt)
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            out.append(f"catalog {key}: live {a.get(key)!r} != rebuilt {b.get(key)!r}")
    keys = set(live.store.partitions) | set(rebuilt.store.partitions) | set(
        live.store.cold) | set(rebuilt.store.cold)
    for table_id, user_id in sorted(keys, key=str):
        table = rebuilt.catalog.tables.get(table_id) or live.catalog.tables.get(table_id)
        if table is None:
            continue
        rows_a = _rows(live, table, user_id)
        rows_b = _rows(rebuilt, table, user_id)
        if rows_a != rows_b:
            out.append(f"table {table.qualified_name} user {user_id}: live has "
                       f"{len(rows_a)} row versions, rebuilt {len(rows_b)}; first difference: "
                       f"{_first_difference(rows_a, rows_b)}")
    return out


def _comparable_catalog(engine: Engine) -> dict[str, object]:
    """Every catalog object keyed by kind and full identity (namespace-qualified names)."""
    data = engine.catalog.to_json()
    data.pop("applied_lsn")
    return {f"{kind}:{_identity(item)}": item for kind, items in data.items() for item in items}


def _identity(item: dict) -> str:
    for key in ("user_id", "storage_id", "table_id"):
        if key in item:
            return str(item[key])
    return ".".join(str(item[k]) for k in ("namespace", "name") if k in item)


def _rows(engine: Engine, table, user_id: str | None) -> list[dict]:
    data = visible_rows(table, engine.store, user_id or "", engine.clock.now_ms(),
                        show_deleted=True)
    return sorted(data.to_pylist(), key=lambda row: row["_seq"])


def _first_difference(a: list[dict], b: list[dict]) -> str:
    for left, right in zip(a, b, strict=False):
        if left != right:
            return f"live {left} vs rebuilt {right}"
    longer = a if len(a) > len(b) else b
    return f"extra row {longer[min(len(a), len(b))]}"
