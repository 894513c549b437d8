"""FILE values (PROTOCOL §5): where uploaded files live, the FileRef a FILE column holds, and
releasing files that no row version references any more.

On-disk layout (under the data directory):

    files/<namespace>/<table>/<sub>/<stored name>            SHARED table
    files/<namespace>/<table>/<user>/<sub>/<stored name>     one user's files of a USER table

- ``<user>`` is the user id percent-encoded as for table partitions (``flush.encode_user``).
- ``<sub>`` is ``f0001``, ``f0002``, … : a folder takes ``files_per_folder_max`` files, then
  the next one starts (§5.1 step 5). The state is derived from the disk (the highest folder
  and how many entries it holds), so nothing about folders is persisted.
- ``<stored name>`` is ``<id>-<sanitized>.<ext>`` or ``<id>.<ext>`` (``stored_name``), where
  ``<id>`` is a Snowflake id, unique per file. The FileRef holds the id, the folder and the
  original name, so the stored name is derived from it: ``stored_name`` is part of the
  on-disk format and must not change. Release matches files by folder and id only.

The upload protocol — the file move and the row's WAL event are one outcome:

1. The API streams each part into a staging file (``staging_dir``, under the data directory
   by default) and computes its size and SHA-256 on the way.
2. ``FileStore.place``: registers the target as *in flight*, fsyncs the staged file, renames
   it into its folder and fsyncs the folder (every newly created parent is synced in its
   own parent too). Failpoint ``files.after_move_before_commit`` sits right after.
3. The statement runs with the FileRef JSON in place of ``FILE("x")`` and commits one WAL
   event (the engine's normal commit path).
4. ``FileStore.finish``: on success the file leaves the in-flight set (a published row now
   references it); if the statement failed with an ``EngineError`` nothing of it was applied,
   so the file is unlinked (and its folder synced). After ``StorageUnavailable`` (the event
   may or may not be in the log) or a cancellation, the file is left to the sweep.

``sweep_files`` deletes every file under ``files/`` that no row version of a current table
references and that is not in flight. It runs at start-up before anything is served (so a
crash between steps 2 and 3 leaves no orphan) and periodically (release, below). A committed
row never points to a missing file: step 2 is durable before step 3 starts, and the sweep
keeps every referenced file.

Release: a file is referenced while any *held* row version (hot or cold, superseded ones
included) of a USER/SHARED table holds its FileRef in a current FILE column — tombstones
(``_deleted`` versions) do not count, as no default read shows them. Superseded versions
stay held until a flush or compaction drops them, so a file is released only after the row
was updated or deleted *and* the versions a reader could still see are gone.

Task safety: ``FileStore`` is used from the trio thread only; its blocking steps run in
worker threads with no shared mutable state.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import trio

from wal import FileIO, failpoints

from .catalog import DELETED_COLUMN, SYSTEM_NAMESPACE, TableDef
from .errors import InvalidOperation
from .flush import encode_user

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("sluice.files")

FILES_DIR = "files"
# Per-request staging directories are named ``upload-<hex>-<user>``; only entries with this
# prefix are ever deleted from the staging directory (it may be shared, e.g. /tmp).
STAGING_PREFIX = "upload-"
SUBFOLDER = re.compile(r"f[0-9]{4}")
# §5.4: the download route accepts exactly four digits, so the last folder is f9999.
SUBFOLDER_NUMBER_MAX = 9999
# §5.1 step 6: the sanitized stem keeps at most this many characters …
SANITIZED_NAME_MAX_CHARS = 50
# … and an extension longer than this (or not alphanumeric) becomes "bin".
EXTENSION_MAX_CHARS = 10
_EXTENSION = re.compile(rf"[a-z0-9]{{1,{EXTENSION_MAX_CHARS}}}")


# ---- names and the FileRef ---------------------------------------------------------------


def sanitized_stem(original: str) -> str:
    """§5.1 step 6: the name without extension, lowercased, ``[a-z0-9]`` kept, space/``_``/``-``
    turned into ``-``, dash runs collapsed, ends trimmed, at most 50 characters."""
    stem = original.rsplit(".", 1)[0] if "." in original.lstrip(".") else original
    out: list[str] = []
    for char in stem.lower():
        if "a" <= char <= "z" or "0" <= char <= "9":
            out.append(char)
        elif char in " _-" and out and out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-")[:SANITIZED_NAME_MAX_CHARS].strip("-")


def extension(original: str) -> str:
    """The lowercased extension if alphanumeric and at most 10 characters, else ``bin``."""
    if "." not in original.lstrip("."):
        return "bin"
    ext = original.rsplit(".", 1)[1].lower()
    return ext if _EXTENSION.fullmatch(ext) else "bin"


def stored_name(file_id: str, original: str) -> str:
    """``<id>-<sanitized>.<ext>``, or ``<id>.<ext>`` when nothing is left of the name."""
    stem = sanitized_stem(original)
    return f"{file_id}-{stem}.{extension(original)}" if stem else \
        f"{file_id}.{extension(original)}"


def subfolder_name(number: int) -> str:
    assert 1 <= number <= SUBFOLDER_NUMBER_MAX, number
    return f"f{number:04d}"


@dataclass(frozen=True, slots=True)
class StagedFile:
    """One uploaded part, complete in the staging directory (the API's until ``place``)."""

    path: Path
    name: str  # the original file name (Content-Disposition filename, else the placeholder)
    size: int
    mime: str
    sha256: str  # lowercase hex


@dataclass(frozen=True, slots=True)
class PlacedFile:
    """A file moved into its folder, not yet known to be referenced by a committed row."""

    path: Path
    ref: dict[str, Any]  # the FileRef of §5.2

    @property
    def ref_json(self) -> str:
        return json.dumps(self.ref, ensure_ascii=False, separators=(",", ":"))


def file_ref(file_id: str, sub: str, staged: StagedFile) -> dict[str, Any]:
    """The FILE column value of §5.2 (key order as the reference emits it)."""
    return {"id": file_id, "sub": sub, "name": staged.name, "size": staged.size,
            "mime": staged.mime, "sha256": staged.sha256}


# ---- the store -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Folder:
    number: int  # current subfolder number
    count: int  # entries in it (placed files; deletions do not free a slot)


@dataclass(slots=True)
class FileStore:
    """Placement, in-flight tracking and deletion of uploaded files (module docstring)."""

    root: Path  # <data>/files
    staging_dir: Path
    files_per_folder_max: int
    io: FileIO
    in_flight: set[Path] = field(default_factory=set)
    placements: int = 0  # files placed so far (part of the sweep signature)
    swept_signature: tuple | None = None  # the state the last sweep saw
    _folders: dict[Path, _Folder] = field(default_factory=dict)
    _synced_dirs: set[Path] = field(default_factory=set)

    def table_dir(self, table: TableDef, user_id: str | None) -> Path:
        base = self.root / table.namespace / table.name
        return base / encode_user(user_id) if table.table_type == "USER" and user_id \
            is not None else base

    async def place(self, engine: Engine, table: TableDef, user_id: str | None,
                    staged: StagedFile) -> PlacedFile:
        """Moves ``staged`` into the table's current folder durably (steps 2 of the module
        docstring) and returns it with its FileRef. The caller must pass the result to
        ``finish`` once the statement's outcome is known. Raises ``OSError`` (nothing is left
        in flight then) or ``InvalidOperation`` when every folder is full."""
        directory = self.table_dir(table, user_id)
        folder = self._folders.get(directory)
        if folder is None:
            folder = await trio.to_thread.run_sync(_scan_folders, directory)
            folder = self._folders.setdefault(directory, folder)
        if folder.count >= self.files_per_folder_max:
            if folder.number >= SUBFOLDER_NUMBER_MAX:
                raise InvalidOperation(f"Table '{table.qualified_name}' has no file folder "
                                       f"left (f{SUBFOLDER_NUMBER_MAX} is full)")
            folder.number, folder.count = folder.number + 1, 0
        folder.count += 1
        self.placements += 1
        file_id, sub = str(engine.sql_ids.next()), subfolder_name(folder.number)
        target = directory / sub / stored_name(file_id, staged.name)
        temp = _temp_path(target)  # only used when staging is on another filesystem
        self.in_flight.update((target, temp))
        try:
            await trio.to_thread.run_sync(self._move, staged.path, target)
        except BaseException:
            self.in_flight.discard(target)
            raise
        finally:
            self.in_flight.discard(temp)
        failpoints.hit("files.after_move_before_commit")
        return PlacedFile(target, file_ref(file_id, sub, staged))

    async def finish(self, placed: list[PlacedFile], *, referenced: bool) -> None:
        """Ends the in-flight state of ``placed``: kept when ``referenced``, else deleted.
        Deletion errors are logged (the next sweep retries); cancellation-safe (shielded)."""
        try:
            if not referenced and placed:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._delete, [p.path for p in placed])
        except OSError as exc:
            log.warning("could not delete unreferenced uploaded files: %s", exc)
        finally:
            for item in placed:
                self.in_flight.discard(item.path)

    def forget(self, placed: list[PlacedFile]) -> None:
        """Leaves ``placed`` to the sweep (the statement's outcome is unknown)."""
        for item in placed:
            self.in_flight.discard(item.path)

    # ---- worker-thread steps ---------------------------------------------------------

    def _move(self, source: Path, target: Path) -> None:
        self._makedirs(target.parent)
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.io.fsync(fd)
        finally:
            self.io.close(fd)
        try:
            self.io.rename(source, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self._copy_across_devices(source, target)
        self.io.fsync_dir(target.parent)

    def _copy_across_devices(self, source: Path, target: Path) -> None:
        """A staging directory on another filesystem: copy, sync, then rename in place."""
        temp = _temp_path(target)  # in flight (``place``), so no sweep deletes it meanwhile
        shutil.copyfile(source, temp)
        fd = os.open(temp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.io.fsync(fd)
        finally:
            self.io.close(fd)
        self.io.rename(temp, target)
        self.io.unlink(source)

    def _makedirs(self, directory: Path) -> None:
        """Creates ``directory`` and syncs every level's entry in its parent (once per
        process per directory: a crashed process may have skipped the sync)."""
        if directory in self._synced_dirs:
            return
        levels = [directory, *directory.parents]
        relative = levels[: levels.index(self.root) + 1] if self.root in levels else [directory]
        for level in reversed(relative):
            if level not in self._synced_dirs:
                self.io.makedirs(level)
                self._synced_dirs.add(level)

    def _delete(self, paths: list[Path]) -> None:
        parents = set()
        for path in paths:
            try:
                self.io.unlink(path)
            except FileNotFoundError:
                continue
            parents.add(path.parent)
        for parent in parents:
            self.io.fsync_dir(parent)


def _temp_path(target: Path) -> Path:
    return target.with_name(target.name + ".tmp")


def new_file_store(data_dir: Path, staging_dir: Path | None, files_per_folder_max: int,
                   io: FileIO) -> FileStore:
    if files_per_folder_max < 1:
        raise ValueError("files_per_folder_max must be at least 1")
    return FileStore(data_dir / FILES_DIR, staging_dir or data_dir / "tmp",
                     files_per_folder_max, io)


def _scan_folders(directory: Path) -> _Folder:
    """Worker thread: the highest existing ``fNNNN`` folder of ``directory`` and its entry
    count (``f0001`` with 0 entries when there is none)."""
    try:
        numbers = [int(e.name[1:]) for e in os.scandir(directory)
                   if e.is_dir() and SUBFOLDER.fullmatch(e.name)]
    except FileNotFoundError:
        numbers = []
    if not numbers:
        return _Folder(1, 0)
    number = max(numbers)
    return _Folder(number, len(os.listdir(directory / subfolder_name(number))))


# ---- release (sweep) -----------------------------------------------------------------------


def _signature(engine: Engine) -> tuple:
    """What a sweep's outcome depends on: the log position (every row and catalog change),
    the placements, and each partition's chunk ids (flush, compaction and merges replace
    chunks without writing to the log)."""
    chunks = sorted((table_id, user_id or "", tuple(part.chunks))
                    for (table_id, user_id), part in engine.store.partitions.items())
    return (int(engine.wal.committed_lsn), engine.files.placements, len(engine.store.cold),
            tuple(chunks))


def sweep_due(engine: Engine) -> bool:
    """False when nothing a sweep looks at changed since the last one (it would find
    nothing new), so the periodic job skips the scan."""
    return _signature(engine) != engine.files.swept_signature


async def sweep_files(engine: Engine) -> int:
    """Deletes the files nothing references (module docstring); returns how many. Lists the
    tree first, then — under the write lock, with queued commits settled — computes what is
    referenced or in flight, so a file placed after the listing is never considered."""
    store: FileStore = engine.files
    store.swept_signature = _signature(engine)  # a change from here on makes the next due
    listed = await trio.to_thread.run_sync(_list_files, store.root)
    if not listed:
        return 0
    async with engine.write_lock:
        await engine.settle()
        keep = referenced_files(engine)
        in_flight = set(store.in_flight)
        doomed = [path for path in listed
                  if path not in in_flight and _file_key(path) not in keep]
        if doomed:
            await trio.to_thread.run_sync(store._delete, doomed)
    if doomed:
        log.info("released %d unreferenced file(s)", len(doomed))
    return len(doomed)


async def clear_staging(engine: Engine) -> None:
    """Start-up: removes per-request staging directories a killed process left behind."""
    staging = engine.files.staging_dir

    def clear() -> None:
        try:
            entries = [e for e in os.scandir(staging) if e.name.startswith(STAGING_PREFIX)]
        except FileNotFoundError:
            return
        for entry in entries:
            shutil.rmtree(entry.path, ignore_errors=True)

    await trio.to_thread.run_sync(clear)


def _list_files(root: Path) -> list[Path]:
    found = []
    for directory, _, names in os.walk(root):
        found += [Path(directory) / name for name in names]
    return found


FileKey = tuple[Path, str, str]  # (table or user directory, subfolder, file id)


def _file_key(path: Path) -> FileKey:
    """The key a stored file is matched by: its directory, folder and leading id."""
    file_id = re.match(r"[0-9]*", path.name).group(0)
    return (path.parent.parent, path.parent.name, file_id)


def referenced_files(engine: Engine) -> set[FileKey]:
    """Every (directory, folder, id) a held, non-tombstone version of a USER/SHARED table
    references through a current FILE column. Trio thread, under the write lock."""
    tables = {t.table_id: t for t in engine.catalog.tables.values()
              if t.table_type in ("USER", "SHARED") and t.namespace != SYSTEM_NAMESPACE
              and any(c.type.kind == "File" for c in t.columns)}
    for table_id, user_id in list(engine.store.cold):  # attach cold data not used yet
        if table_id in tables:
            engine.store.partition(tables[table_id], user_id, create=False)
    keys: set[FileKey] = set()
    for (table_id, user_id), part in list(engine.store.partitions.items()):
        table = tables.get(table_id)
        if table is None:
            continue
        directory = engine.files.table_dir(table, user_id)
        names = [c.storage_name for c in table.columns if c.type.kind == "File"]
        for chunk in part.chunks.values():
            for text in _file_values(chunk.table, names):
                key = _ref_key(directory, text)
                if key is not None:
                    keys.add(key)
    return keys


def _file_values(data: pa.Table, names: list[str]) -> list[str]:
    live = pc.invert(pc.fill_null(data.column(DELETED_COLUMN), False)) \
        if DELETED_COLUMN in data.column_names else None
    values: list[str] = []
    for name in names:
        if name not in data.column_names:
            continue
        column = data.column(name)
        if live is not None:
            column = column.filter(live)
        values += [v for v in column.to_pylist() if v]
    return values


def _ref_key(directory: Path, text: str) -> FileKey | None:
    """The key of a FileRef's file; None for text that is not a FileRef of ours."""
    try:
        ref = json.loads(text)
    except ValueError:
        return None
    if not isinstance(ref, dict):
        return None
    file_id, sub = ref.get("id"), ref.get("sub")
    if not isinstance(file_id, str) or not file_id.isdigit() or not isinstance(sub, str) \
            or not SUBFOLDER.fullmatch(sub):
        return None
    return (directory, sub, file_id)
