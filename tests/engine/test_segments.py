"""Arrow segment files, the partition manifest, the flush step under crashes, and the cache.

Damage must always surface as ``SegmentCorruptError``/``ManifestCorruptError`` (so the owner
rebuilds from the WAL), never as an Arrow error or silently wrong data (TESTING.md §C, §E).
"""

from __future__ import annotations

import dataclasses
import decimal
import errno
import json
import random
import struct
import threading
from datetime import UTC, datetime
from pathlib import Path

import crc32c
import pyarrow as pa
import pytest

from engine import segments as seg
from engine.segments import (
    Manifest,
    ManifestCorruptError,
    SegmentCache,
    SegmentCorruptError,
    SegmentMeta,
)
from tests.wal.crash.crashfs import CrashFS
from wal import FileIO, failpoints

POWER_LOSS_SEEDS = range(8)


def _wide_table(rows: int = 5) -> pa.Table:
    """Every column type we promise to store, each with nulls."""
    def null_every_third(values: list) -> list:
        return [None if i % 3 == 1 else v for i, v in enumerate(values)]

    ts = [datetime(2024, 1, 1, 12, 0, i, 123456, tzinfo=UTC) for i in range(rows)]
    return pa.table({
        "_seq": pa.array(range(100, 100 + rows), pa.int64()),
        "name": pa.array(null_every_third([f"row-{i}-é" for i in range(rows)]), pa.utf8()),
        "flag": pa.array(null_every_third([i % 2 == 0 for i in range(rows)]), pa.bool_()),
        "at": pa.array(null_every_third(ts), pa.timestamp("us", tz="UTC")),
        "price": pa.array(null_every_third([decimal.Decimal(f"{i}.0125") for i in range(rows)]),
                          pa.decimal128(20, 4)),
        "blob": pa.array(null_every_third([bytes([i]) * i for i in range(rows)]), pa.binary()),
        "uuid": pa.array(null_every_third([bytes([i]) * 16 for i in range(rows)]),
                         pa.binary(16)),
        "vec": pa.array(null_every_third([[float(i), 0.5, -1.0, 2.0] for i in range(rows)]),
                        pa.list_(pa.float32(), 4)),
    }).replace_schema_metadata({"owner": "test"})


def _meta(table: pa.Table, first_lsn: int = 10) -> SegmentMeta:
    seqs = table.column("_seq").to_pylist()
    return SegmentMeta(min(seqs), max(seqs), table.num_rows, first_lsn, first_lsn + 4)


def _small_segment() -> bytes:
    table = pa.table({"_seq": pa.array([1, 2], pa.int64()), "v": ["a", None]})
    return seg.encode_segment(table, SegmentMeta(1, 2, 2, 7, 8))


def _flip(data: bytes, bit: int) -> bytes:
    damaged = bytearray(data)
    damaged[bit // 8] ^= 1 << (bit % 8)
    return bytes(damaged)


# ---- segment format ---------------------------------------------------------------------------


def test_segment__round_trip__many_column_types_with_nulls() -> None:
    table = _wide_table()
    decoded, meta = seg.decode_segment(seg.encode_segment(table, _meta(table)), "mem")
    assert decoded.equals(table, check_metadata=True)
    assert meta == _meta(table)
    assert [decoded.column(name).null_count for name in decoded.column_names[1:]] == [2] * 7


def test_segment__round_trip_through_file__directory_created(tmp_path: Path) -> None:
    table, path = _wide_table(50), tmp_path / "ns" / "t" / seg.segment_file_name(1)
    seg.write_segment(FileIO(), path, table, _meta(table))
    decoded, meta = seg.read_segment(path)
    assert decoded.equals(table, check_metadata=True)
    assert meta == seg.verify_segment(path) == _meta(table)
    assert sorted(p.name for p in path.parent.iterdir()) == ["seg-00000001.arrow"]


def test_segment__trailer__layout_is_as_documented() -> None:
    # Golden-ish: parse the last 24 bytes by the offsets in the module docstring.
    data = _small_segment()
    ipc, trailer = data[:-24], data[-24:]
    assert trailer[0:8] == b"SLSEGv01"
    assert struct.unpack_from("<Q", trailer, 8)[0] == len(ipc)
    assert struct.unpack_from("<I", trailer, 16)[0] == crc32c.crc32c(ipc)
    assert struct.unpack_from("<I", trailer, 20)[0] == crc32c.crc32c(trailer[:20])
    assert ipc[:6] == b"ARROW1"
    assert ipc[-6:] == b"ARROW1"  # a whole Arrow IPC file precedes the trailer
    schema = pa.ipc.open_file(pa.py_buffer(ipc)).schema
    assert json.loads(schema.metadata[b"sluice.segment"]) == {
        "format_version": 1, "min_seq": 1, "max_seq": 2, "rows": 2, "first_lsn": 7,
        "last_lsn": 8}


def test_segment__compressible_column__stored_zstd_compressed() -> None:
    table = pa.table({"_seq": pa.array([0] * 100_000, pa.int64())})
    data = seg.encode_segment(table, SegmentMeta(0, 0, 100_000, 1, 1))
    assert len(data) < 100_000 * 8 // 20


@pytest.mark.parametrize("change, match", [
    ({"rows": 3}, "rows"), ({"min_seq": 9}, "min_seq"), ({"first_lsn": 99}, "first_lsn"),
    ({"max_seq": -1}, "max_seq"), ({"rows": True}, "rows"),
])
def test_segment__encode__meta_out_of_range_or_disagreeing__value_error(change, match) -> None:
    table = pa.table({"_seq": pa.array([1, 2], pa.int64())})
    meta = dataclasses.replace(SegmentMeta(1, 2, 2, 7, 8), **change)
    with pytest.raises(ValueError, match=match):
        seg.encode_segment(table, meta)


def test_segment__encode__reserved_metadata_key__value_error() -> None:
    table = pa.table({"a": [1]}).replace_schema_metadata({b"sluice.segment": b"{}"})
    with pytest.raises(ValueError, match="reserved"):
        seg.encode_segment(table, SegmentMeta(0, 0, 1, 1, 1))


# ---- segment damage ---------------------------------------------------------------------------


def test_segment__every_truncation_in_memory__corrupt_error() -> None:
    data = _small_segment()
    for length in range(len(data)):
        with pytest.raises(SegmentCorruptError):
            seg.decode_segment(data[:length], f"truncated to {length}")


def test_segment__every_truncation_on_disk__read_and_verify_raise_corrupt(tmp_path: Path) -> None:
    data, path = _small_segment(), tmp_path / "seg-00000001.arrow"
    for length in range(len(data)):
        path.write_bytes(data[:length])
        with pytest.raises(SegmentCorruptError):
            seg.read_segment(path)
        with pytest.raises(SegmentCorruptError):
            seg.verify_segment(path)


def test_segment__every_single_bit_flip__corrupt_error_never_arrow_error() -> None:
    # Exhaustive over the file: IPC body, Arrow footer and our trailer alike.
    data = _small_segment()
    for bit in range(len(data) * 8):
        with pytest.raises(SegmentCorruptError):
            seg.decode_segment(_flip(data, bit), f"bit {bit}")


@pytest.mark.parametrize("region, offset_from_end, reason", [
    ("ipc_body", None, "IPC CRC"),
    ("arrow_footer", 24 + 12, "IPC CRC"),  # inside the flatbuffer footer / its length field
    ("trailer_magic", 24, "magic"),
    ("trailer_ipc_len", 16, "trailer CRC"),
    ("trailer_ipc_crc", 8, "trailer CRC"),
    ("trailer_crc", 1, "trailer CRC"),
])
def test_segment__bit_flip_on_disk__corrupt_error_names_the_check(
        tmp_path: Path, region: str, offset_from_end: int | None, reason: str) -> None:
    data, path = _small_segment(), tmp_path / "seg-00000001.arrow"
    offset = len(data) // 3 if offset_from_end is None else len(data) - offset_from_end
    path.write_bytes(_flip(data, offset * 8 + 3))
    with pytest.raises(SegmentCorruptError, match=reason) as info:
        seg.read_segment(path)
    assert info.value.path == path


def test_segment__garbage_appended__length_disagrees_with_file_size() -> None:
    data = _small_segment()
    with pytest.raises(SegmentCorruptError, match="magic"):
        seg.decode_segment(data + b"\x00" * 7, "appended")


def test_segment__huge_length_with_valid_trailer_crc__rejected_before_allocating(
        tmp_path: Path) -> None:
    # A forged trailer (right magic and CRC) claims 2**60 IPC bytes: the size check refuses it.
    head = struct.pack("<8sQI", b"SLSEGv01", 2**60, 0)
    path = tmp_path / "seg-00000001.arrow"
    path.write_bytes(b"x" * 100 + head + struct.pack("<I", crc32c.crc32c(head)))
    with pytest.raises(SegmentCorruptError, match="trailer says"):
        seg.read_segment(path)


def test_segment__file_above_size_limit__rejected_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "seg-00000001.arrow"
    with open(path, "wb") as file:  # sparse: no real gigabyte is written
        file.truncate(seg.SEGMENT_SIZE_MAX_BYTES + 1)
    with pytest.raises(SegmentCorruptError, match="SEGMENT_SIZE_MAX_BYTES"):
        seg.read_segment(path)


def _with_trailer(ipc: bytes) -> bytes:
    head = struct.pack("<8sQI", b"SLSEGv01", len(ipc), crc32c.crc32c(ipc))
    return ipc + head + struct.pack("<I", crc32c.crc32c(head))


@pytest.mark.parametrize("case", ["not_arrow", "arrow_without_metadata", "rows_disagree"])
def test_segment__valid_checksums_but_bad_content__corrupt_error(case: str) -> None:
    # A writer bug (not disk damage) must still be caught after the CRCs pass.
    table = pa.table({"a": [1, 2]})
    if case == "rows_disagree":
        good = json.dumps({"format_version": 1, "min_seq": 0, "max_seq": 0, "rows": 5,
                           "first_lsn": 1, "last_lsn": 1})
        table = table.replace_schema_metadata({b"sluice.segment": good.encode()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    ipc = b"definitely not an arrow file" if case == "not_arrow" else sink.getvalue().to_pybytes()
    with pytest.raises(SegmentCorruptError):
        seg.decode_segment(_with_trailer(ipc), case)


# ---- manifest ---------------------------------------------------------------------------------


def _manifest(count: int = 2) -> Manifest:
    entries = tuple(seg.SegmentEntry(seg.segment_file_name(n), n * 10, n * 10 + 9, 10, n * 5 + 1,
                                     n * 5 + 5, 1000 + n) for n in range(1, count + 1))
    return Manifest(entries, checkpoint_lsn=count * 5 + 7, next_segment_number=count + 1)


def test_manifest__round_trip__and_absent_means_none(tmp_path: Path) -> None:
    assert seg.read_manifest(tmp_path / "part") is None
    seg.write_manifest(FileIO(), tmp_path / "part", _manifest())
    assert seg.read_manifest(tmp_path / "part") == _manifest()
    assert sorted(p.name for p in (tmp_path / "part").iterdir()) == ["manifest.json"]


def test_manifest__every_bit_flip_and_truncation__corrupt_error() -> None:
    data = seg.encode_manifest(_manifest())
    for bit in range(len(data) * 8):
        with pytest.raises(ManifestCorruptError):
            seg.decode_manifest(_flip(data, bit), f"bit {bit}")
    for length in range(len(data)):
        with pytest.raises(ManifestCorruptError):
            seg.decode_manifest(data[:length], f"length {length}")


@pytest.mark.parametrize("damage", [
    "path_traversal_name", "next_number_not_above_listed", "unsorted_names", "negative_lsn",
    "extra_field", "whitespace_reformatted",
])
def test_manifest__valid_crc_but_invalid_body__corrupt_error(tmp_path: Path, damage: str) -> None:
    body = json.loads(seg.encode_manifest(_manifest()))["body"]
    if damage == "path_traversal_name":
        body["segments"][0]["file_name"] = "../../etc/passwd"
    elif damage == "next_number_not_above_listed":
        body["next_segment_number"] = 2
    elif damage == "unsorted_names":
        body["segments"].reverse()
    elif damage == "negative_lsn":
        body["checkpoint_lsn"] = -1
    elif damage == "extra_field":
        body["segments"][0]["extra"] = 1
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    document = {"body": body, "crc32c": crc32c.crc32c(canonical)}
    indent = 1 if damage == "whitespace_reformatted" else None
    data = json.dumps(document, sort_keys=True, indent=indent,
                      separators=None if indent else (",", ":")).encode()
    (tmp_path / "manifest.json").write_bytes(data)
    with pytest.raises(ManifestCorruptError):
        seg.read_manifest(tmp_path)


def test_manifest__encode_invalid__value_error() -> None:
    with pytest.raises(ValueError, match="next_segment_number"):
        seg.encode_manifest(dataclasses.replace(_manifest(), next_segment_number=1))


# ---- partition: orphans, checks, discard ------------------------------------------------------


def _flush(io: FileIO, directory: Path, manifest: Manifest | None, rows: int) -> Manifest:
    """One flush of ``rows`` rows after ``manifest``'s checkpoint."""
    start = manifest.checkpoint_lsn if manifest else 0
    table = pa.table({"_seq": pa.array(range(start * 100, start * 100 + rows), pa.int64())})
    meta = SegmentMeta(start * 100, start * 100 + rows - 1, rows, start + 1, start + 3)
    return seg.append_segment(io, directory, manifest, table, meta, checkpoint_lsn=start + 4)


def test_flush__two_flushes__manifest_lists_both_and_checkpoint_advances(tmp_path: Path) -> None:
    first = _flush(FileIO(), tmp_path, None, 3)
    second = _flush(FileIO(), tmp_path, first, 4)
    assert seg.read_manifest(tmp_path) == second
    assert [e.file_name for e in second.segments] == ["seg-00000001.arrow", "seg-00000002.arrow"]
    assert (second.checkpoint_lsn, second.next_segment_number) == (8, 3)
    assert seg.check_partition(tmp_path, second) == []
    assert seg.orphan_segments(tmp_path, second) == []


def test_flush__rows_not_after_checkpoint__value_error(tmp_path: Path) -> None:
    manifest = _flush(FileIO(), tmp_path, None, 3)
    table = pa.table({"_seq": pa.array([1], pa.int64())})
    with pytest.raises(ValueError, match="not after checkpoint"):
        seg.append_segment(FileIO(), tmp_path, manifest, table, SegmentMeta(1, 1, 1, 2, 2), 9)


def test_orphans__unlisted_segment_and_temp_files__listed_foreign_files_ignored(
        tmp_path: Path) -> None:
    manifest = _flush(FileIO(), tmp_path, None, 3)
    for name in ("seg-00000002.arrow", "seg-00000003.arrow.tmp", "manifest.json.tmp",
                 "notes.txt", "seg-1.arrow"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "user-7").mkdir()
    expected = ["manifest.json.tmp", "seg-00000002.arrow", "seg-00000003.arrow.tmp"]
    assert [p.name for p in seg.orphan_segments(tmp_path, manifest)] == expected
    assert [p.name for p in seg.delete_orphans(FileIO(), tmp_path, manifest)] == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json", "notes.txt", "seg-00000001.arrow", "seg-1.arrow", "user-7"]


def test_orphans__no_manifest__every_segment_is_an_orphan(tmp_path: Path) -> None:
    _flush(FileIO(), tmp_path, None, 3)
    (tmp_path / "manifest.json").unlink()
    assert [p.name for p in seg.orphan_segments(tmp_path, None)] == ["seg-00000001.arrow"]
    assert seg.orphan_segments(tmp_path / "missing", None) == []


@pytest.mark.parametrize("damage, reason", [
    ("delete", "missing"), ("truncate", "size"), ("flip_bit", "IPC CRC"),
    ("swap_with_other_segment", "size|differs"),
])
def test_check_partition__listed_segment_damaged__problem_reported(
        tmp_path: Path, damage: str, reason: str) -> None:
    manifest = _flush(FileIO(), tmp_path, _flush(FileIO(), tmp_path, None, 3), 3)
    path, other = tmp_path / "seg-00000001.arrow", tmp_path / "seg-00000002.arrow"
    if damage == "delete":
        path.unlink()
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:-1])
    elif damage == "flip_bit":
        path.write_bytes(_flip(path.read_bytes(), 50 * 8))
    else:
        path.write_bytes(other.read_bytes())
    problems = seg.check_partition(tmp_path, manifest)
    assert [p.file_name for p in problems] == ["seg-00000001.arrow"]
    assert any(word in problems[0].reason for word in reason.split("|"))


def test_discard_partition__removes_our_files_only__then_a_fresh_flush_works(
        tmp_path: Path) -> None:
    manifest = _flush(FileIO(), tmp_path, None, 3)
    _flush(FileIO(), tmp_path, manifest, 3)
    (tmp_path / "foreign.bin").write_bytes(b"keep")
    seg.discard_partition(FileIO(), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["foreign.bin"]
    assert seg.read_manifest(tmp_path) is None
    assert _flush(FileIO(), tmp_path, None, 2).segments[0].file_name == "seg-00000001.arrow"


# ---- flush under crashes (TESTING.md §E) ------------------------------------------------------


class _RenameFails(FileIO):
    """Real I/O, except that the rename onto ``target_name`` raises EIO (a failing disk)."""

    def __init__(self, target_name: str) -> None:
        self.target_name = target_name

    def rename(self, src: Path, dst: Path) -> None:
        if Path(dst).name == self.target_name:
            raise OSError(errno.EIO, f"injected rename failure onto {dst}")
        super().rename(src, dst)


class _FailpointAt(FileIO):
    """Arms failpoint ``name`` (action "raise") only while replacing ``target_name``."""

    def __init__(self, name: str, target_name: str) -> None:
        self.name, self.target_name = name, target_name

    def replace_atomically(self, path: Path, data: bytes) -> None:
        if path.name != self.target_name:
            return super().replace_atomically(path, data)
        failpoints.enable(self.name, "raise")
        try:
            return super().replace_atomically(path, data)
        finally:
            failpoints.disable(self.name)


def _restart_and_check(directory: Path, old: Manifest) -> Manifest:
    """What an owner does on open: undo orphans, verify; the state is the old or the new one."""
    manifest = seg.read_manifest(directory) or Manifest()
    assert manifest == old or (manifest.segments[:-1] == old.segments
                               and manifest.next_segment_number == old.next_segment_number + 1)
    seg.delete_orphans(FileIO(), directory, manifest)
    assert seg.check_partition(directory, manifest) == []
    for entry in manifest.segments:
        assert seg.read_segment(directory / entry.file_name)[1] == entry.meta
    names = {p.name for p in directory.iterdir()}
    listed = {e.file_name for e in manifest.segments}
    assert names - {"manifest.json"} == listed, "every file left is recognised and live"
    return manifest


@pytest.mark.parametrize("target", ["seg-00000002.arrow", "manifest.json"])
def test_flush__rename_fails__old_manifest_intact_and_no_partial_segment(
        tmp_path: Path, target: str) -> None:
    old = _flush(FileIO(), tmp_path, None, 3)
    with pytest.raises(OSError, match="injected"):
        _flush(_RenameFails(target), tmp_path, old, 4)
    assert seg.read_manifest(tmp_path) == old
    visible = {p.name for p in tmp_path.iterdir()} - {"manifest.json", "seg-00000001.arrow"}
    assert visible <= {"seg-00000002.arrow", "seg-00000002.arrow.tmp", "manifest.json.tmp"}
    assert _restart_and_check(tmp_path, old) == old
    assert _flush(FileIO(), tmp_path, old, 4).segments[-1].rows == 4  # a retry succeeds


@pytest.mark.parametrize("target", ["seg-00000002.arrow", "manifest.json"])
@pytest.mark.parametrize("failpoint", ["file.before_rename", "file.after_rename_before_dir_fsync"])
def test_flush__failpoint_in_each_step__restart_finds_it_finished_or_undone(
        tmp_path: Path, failpoint: str, target: str) -> None:
    old = _flush(FileIO(), tmp_path, None, 3)
    with pytest.raises(OSError, match="failpoint"):
        _flush(_FailpointAt(failpoint, target), tmp_path, old, 4)
    recovered = _restart_and_check(tmp_path, old)
    finished = failpoint == "file.after_rename_before_dir_fsync" and target == "manifest.json"
    assert len(recovered.segments) == (2 if finished else 1)
    assert _flush(FileIO(), tmp_path, recovered, 2).next_segment_number == (4 if finished else 3)


@pytest.mark.xfail(strict=True, reason=(
    "CrashFS models rename() over an existing file as two directory operations (unlink the "
    "target, then rename), and a crash may keep only the first, leaving neither manifest. "
    "POSIX rename replaces atomically. Remove this marker when CrashFS models that."))
def test_flush__power_loss_at_every_io_call__old_or_new_manifest_and_valid_segments(
        tmp_path: Path) -> None:
    # CrashFS loses power during the k-th mutating call of a second flush, for every k; fixed
    # seeds, so each (seed, k) is a reproducible regression case.
    for seed in POWER_LOSS_SEEDS:
        for k in range(1, 100):
            root = tmp_path / f"{seed}-{k}"
            fs = CrashFS(root / "stash")
            old = _flush(fs, root / "part", None, 3)
            fs.crash_at_call(k, random.Random(seed * 1000 + k))  # the k-th call from now
            try:
                _flush(fs, root / "part", old, 4)
            except OSError:
                try:
                    _restart_and_check(root / "part", old)
                except AssertionError as exc:
                    raise AssertionError(f"seed {seed}, call {k}: {fs.crash_log}") from exc
                continue
            assert not fs.crashed
            assert k > 5, "the flush should take several I/O calls"
            break
        else:
            raise AssertionError(f"the flush never finished (seed {seed})")


# ---- decoded-segment cache --------------------------------------------------------------------


def _segments_on_disk(directory: Path, count: int, rows: int = 1000) -> list[Path]:
    manifest = None
    for _ in range(count):
        manifest = _flush(FileIO(), directory, manifest, rows)
    return [directory / entry.file_name for entry in manifest.segments]


def test_cache__second_get__hit_without_rereading(tmp_path: Path) -> None:
    [path] = _segments_on_disk(tmp_path, 1)
    cache = SegmentCache(budget_bytes=10**8)
    first = cache.get(path)
    assert cache.get(path)[0] is first[0]
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.entries, stats.resident_bytes) == (
        1, 1, 1, first[0].nbytes)


def test_cache__over_budget__least_recently_used_evicted(tmp_path: Path) -> None:
    a, b, c = _segments_on_disk(tmp_path, 3)
    size = seg.read_segment(a)[0].nbytes
    cache = SegmentCache(budget_bytes=2 * size)
    cache.get(a), cache.get(b), cache.get(a), cache.get(c)  # b is least recently used
    stats = cache.statistics()
    assert (stats.evictions, stats.entries, stats.resident_bytes) == (1, 2, 2 * size)
    cache.get(a)
    assert cache.statistics().hits == 2
    cache.get(b)
    assert cache.statistics().misses == 4


def test_cache__segment_rewritten_under_same_name__reloaded_not_stale(tmp_path: Path) -> None:
    [path] = _segments_on_disk(tmp_path, 1, rows=3)
    cache = SegmentCache(budget_bytes=10**8)
    assert cache.get(path)[1].rows == 3
    table = pa.table({"_seq": pa.array([5, 6], pa.int64())})
    seg.write_segment(FileIO(), path, table, SegmentMeta(5, 6, 2, 1, 1))
    assert cache.get(path)[1].rows == 2
    assert cache.statistics().entries == 1


def test_cache__table_larger_than_budget__returned_but_not_kept(tmp_path: Path) -> None:
    [path] = _segments_on_disk(tmp_path, 1)
    cache = SegmentCache(budget_bytes=10)
    assert cache.get(path)[1].rows == 1000
    assert cache.statistics().entries == cache.statistics().resident_bytes == 0


def test_cache__corrupt_segment__error_raised_and_nothing_cached(tmp_path: Path) -> None:
    [path] = _segments_on_disk(tmp_path, 1)
    path.write_bytes(_flip(path.read_bytes(), 100))
    cache = SegmentCache(budget_bytes=10**8)
    with pytest.raises(SegmentCorruptError):
        cache.get(path)
    assert cache.statistics().entries == 0


def test_cache__eight_threads_hammering_get__same_data_and_budget_held(tmp_path: Path) -> None:
    paths = _segments_on_disk(tmp_path, 6, rows=500)
    expected = {p: seg.read_segment(p)[0] for p in paths}
    budget = 3 * expected[paths[0]].nbytes
    cache, errors = SegmentCache(budget_bytes=budget), []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(200):
                path = rng.choice(paths)
                assert cache.get(path)[0].equals(expected[path])
                assert cache.statistics().resident_bytes <= budget
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stats = cache.statistics()
    assert stats.hits + stats.misses == 8 * 200
    assert stats.entries <= 3
    assert stats.resident_bytes == stats.entries * expected[paths[0]].nbytes  # equal sizes


def test_cache__negative_budget__value_error() -> None:
    with pytest.raises(ValueError):
        SegmentCache(budget_bytes=-1)


def test_segment_file_name__eight_digits__parse_rejects_lookalikes() -> None:
    assert seg.segment_file_name(42) == "seg-00000042.arrow"
    assert seg.parse_segment_file_name("seg-00000042.arrow") == 42
    for name in ("seg-00000000.arrow", "seg-0000042.arrow", "seg-00000042.arrow.tmp",
                 "seg-" + "\u0660" * 7 + "\u0661.arrow", "manifest.json"):
        assert seg.parse_segment_file_name(name) is None
