"""The Wal facade and group commit, end to end on real files."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from tests.wal.harness import SMALL, record
from wal import (
    FsyncPolicy,
    RecordTooLargeError,
    WalClosedError,
    WalConfig,
    WalCorruptionError,
    WalLockedError,
    iter_frames,
    open_wal,
    read_frame_at,
)


async def test_append__sequential__lsns_start_at_one_and_read_back(tmp_path: Path) -> None:
    # Appends return 1, 2, 3 …; read_from yields exactly the payloads in order.
    async with open_wal(tmp_path, SMALL) as wal:
        lsns = [await wal.append(record(i)) for i in range(10)]
        assert lsns == list(range(1, 11))
        assert [f.payload for f in wal.read_from(1)] == [record(i) for i in range(10)]
        assert [f.lsn for f in wal.read_from(7)] == [7, 8, 9, 10]


async def test_group_commit__concurrent_appenders__contiguous_lsns_fewer_syncs(tmp_path: Path) -> None:
    # 64 tasks append at once: LSNs are unique and gap-free, and batches share fsyncs.
    results: dict[int, bytes] = {}

    async def appender(k: int) -> None:
        for i in range(20):
            body = record(k * 1000 + i)
            results[await wal.append(body)] = body

    async with open_wal(tmp_path, WalConfig()) as wal:
        async with trio.open_nursery() as nursery:
            for k in range(64):
                nursery.start_soon(appender, k)
        stats = wal.statistics()
    assert sorted(results) == list(range(1, 64 * 20 + 1))
    assert stats.syncs == stats.batches < 64 * 20
    assert {f.lsn: f.payload for f in iter_frames(tmp_path)} == results


async def test_append_batch__many_payloads__consecutive_lsns_one_batch(tmp_path: Path) -> None:
    async with open_wal(tmp_path, SMALL) as wal:
        await wal.append(b"first")
        lsns = await wal.append_batch([record(i) for i in range(100)])
        assert lsns == list(range(2, 102))
        with pytest.raises(ValueError, match="at least one"):
            await wal.append_batch([])
    assert [f.payload for f in iter_frames(tmp_path, 2)] == [record(i) for i in range(100)]


async def test_append__too_large_or_not_bytes__rejected_before_queueing(tmp_path: Path) -> None:
    # The limit is checked before anything is queued: nothing is written.
    async with open_wal(tmp_path, SMALL) as wal:
        with pytest.raises(RecordTooLargeError) as caught:
            await wal.append(b"x" * (SMALL.record_size_max_bytes + 1))
        assert caught.value.max_bytes == SMALL.record_size_max_bytes
        with pytest.raises(RecordTooLargeError):
            await wal.append_batch([b"ok", b"x" * (SMALL.record_size_max_bytes + 1)])
        with pytest.raises(TypeError):
            await wal.append("text")  # type: ignore[arg-type]
        assert await wal.append(b"x" * SMALL.record_size_max_bytes) == 1
    assert [f.lsn for f in iter_frames(tmp_path)] == [1]


async def test_close__appends_after_exit__raise_closed(tmp_path: Path) -> None:
    async with open_wal(tmp_path, SMALL) as wal:
        await wal.append(b"a")
    with pytest.raises(WalClosedError):
        await wal.append(b"b")


async def test_segments__small_size__roll_and_reopen_continues_lsns(tmp_path: Path) -> None:
    # 8 KiB segments force rolls; a reopen resumes at the next LSN in the last segment.
    async with open_wal(tmp_path, SMALL) as wal:
        for i in range(300):
            await wal.append(record(i, 100))
        assert wal.statistics().segments_rolled >= 3
    async with open_wal(tmp_path, SMALL) as wal:
        assert wal.committed_lsn == 300
        assert wal.recovery_report.torn_tail is None
        assert await wal.append(b"after") == 301
    frames = list(iter_frames(tmp_path))
    assert [f.lsn for f in frames] == list(range(1, 302))
    assert frames[299].payload == record(299, 100)
    assert len(list(tmp_path.glob("*.wal"))) >= 4


async def test_compression__large_compressible_payload__stored_smaller(tmp_path: Path) -> None:
    body = b"sluice " * 200
    async with open_wal(tmp_path, SMALL) as wal:
        lsn = await wal.append(body)
    (frame,) = iter_frames(tmp_path, lsn)
    assert frame.compressed and frame.stored_len < len(body)
    assert frame.payload == body
    assert read_frame_at(tmp_path, frame.segment_base_lsn, frame.offset).payload == body


async def test_compression__enqueue_without_compress__stored_raw_and_readable(
        tmp_path: Path) -> None:
    # The engine's row events opt out of zstd; the next record still compresses as before.
    body = b"sluice " * 200
    async with open_wal(tmp_path, SMALL) as wal:
        raw = await (await wal.enqueue(body, compress=False)).wait()
        packed = await (await wal.enqueue(body)).wait()
    frames = list(iter_frames(tmp_path, raw))
    assert [f.lsn for f in frames] == [raw, packed]
    assert not frames[0].compressed and frames[0].stored_len == len(body)
    assert frames[1].compressed
    assert [f.payload for f in frames] == [body, body]


@pytest.mark.parametrize("policy", ["interval:5", "none"])
async def test_fsync_policy__relaxed__acks_before_sync(tmp_path: Path, policy: str) -> None:
    # interval syncs on a timer after writes; none only at close. Both ack unsynced writes.
    config = WalConfig(fsync=FsyncPolicy.parse(policy))
    async with open_wal(tmp_path, config) as wal:
        for i in range(20):
            await wal.append(record(i))
        await trio.sleep(0.05)
        stats = wal.statistics()
    assert stats.records_appended == 20
    if policy == "none":
        assert stats.syncs == 0
    else:
        assert 1 <= stats.syncs < stats.batches + 1
    assert len(list(iter_frames(tmp_path))) == 20


def test_fsync_policy__parse__accepts_documented_forms_only() -> None:
    assert str(FsyncPolicy.parse("always")) == "always"
    assert FsyncPolicy.parse("interval:250").interval_ms == 250
    assert FsyncPolicy.parse(" NONE ").kind == "none"
    for bad in ("sometimes", "interval:", "interval:0", "interval:x", "interval:60001"):
        with pytest.raises(ValueError):
            FsyncPolicy.parse(bad)


def test_config__invalid_limits__rejected_with_the_name() -> None:
    with pytest.raises(ValueError, match="batch_records_max"):
        WalConfig(batch_records_max=0)
    with pytest.raises(ValueError, match="segment_size_max_bytes"):
        WalConfig(segment_size_max_bytes=1024, record_size_max_bytes=2048)
    with pytest.raises(ValueError, match="record_size_max_bytes"):
        WalConfig(record_size_max_bytes=2**30)
    with pytest.raises(TypeError):
        WalConfig(fsync="always")  # type: ignore[arg-type]


async def test_wait_for_commit_after__woken_by_the_commit_path(tmp_path: Path) -> None:
    # A waiter parks until an LSN beyond its point is acknowledged, no polling involved.
    async with open_wal(tmp_path, SMALL) as wal:
        await wal.append(b"one")
        seen = []

        async def waiter() -> None:
            seen.append(await wal.wait_for_commit_after(1))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert seen == []
            await wal.append(b"two")
        assert seen == [2]
        with trio.move_on_after(0.01) as scope:
            await wal.wait_for_commit_after(2)
        assert scope.cancelled_caught


async def test_retention__truncate_before__deletes_whole_old_segments_only(tmp_path: Path) -> None:
    # Only segments entirely below the LSN go; the active one always stays.
    async with open_wal(tmp_path, SMALL) as wal:
        for i in range(300):
            await wal.append(record(i, 100))
        bases = sorted(int(p.stem) for p in tmp_path.glob("*.wal"))
        assert await wal.truncate_before(bases[1]) == 1
        assert wal.first_lsn == bases[1]
        assert await wal.truncate_before(bases[2] - 1) == 0
        assert await wal.truncate_before(10**9) == len(bases) - 2
        assert wal.first_lsn == bases[-1]
        assert [f.lsn for f in wal.read_from(1)] == list(range(bases[-1], 301))
    async with open_wal(tmp_path, SMALL) as wal:
        assert wal.committed_lsn == 300
        assert await wal.append(b"more") == 301


async def test_lock__second_open_of_the_same_directory__refused(tmp_path: Path) -> None:
    # flock on DIR/LOCK: a second writer (any process) is refused until the first closes.
    async with open_wal(tmp_path, SMALL) as wal:
        await wal.append(b"a")
        with pytest.raises(WalLockedError, match="already open"):
            async with open_wal(tmp_path, SMALL):
                pass
    async with open_wal(tmp_path, SMALL) as wal:
        assert await wal.append(b"b") == 2


def test_iter_frames__damaged_sealed_segment__error_names_it(tmp_path: Path) -> None:
    # A cut in a sealed segment is reported at the damaged frame, not at the next segment.
    async def build() -> None:
        async with open_wal(tmp_path, SMALL) as wal:
            for i in range(200):
                await wal.append(record(i, 100))

    trio.run(build)
    first = sorted(tmp_path.glob("*.wal"))[0]
    data = bytearray(first.read_bytes())
    frames = [f for f in iter_frames(tmp_path) if f.segment_base_lsn == 1]
    data[frames[-1].offset + 50] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(WalCorruptionError) as caught:
        list(iter_frames(tmp_path))
    assert caught.value.segment_path == first
    assert caught.value.offset == frames[-1].offset


async def test_enqueue__several_queued_before_any_wait__lsns_in_queue_order_one_sync(
        tmp_path: Path) -> None:
    # Pipelining: three records queued back to back (no wait in between) get consecutive
    # LSNs in queue order, and once the last is done every earlier one is done too.
    async with open_wal(tmp_path, SMALL) as wal:
        await wal.append(record(0))
        syncs = wal.statistics().syncs
        tickets = [await wal.enqueue(record(i)) for i in (1, 2, 3)]
        assert not any(ticket.done for ticket in tickets)
        assert await tickets[-1].wait() == 4
        assert all(t.done and t.error is None for t in tickets)
        assert [t.lsn for t in tickets] == [2, 3, 4]
        assert wal.statistics().syncs == syncs + 1
        assert [f.payload for f in wal.read_from(2)] == [record(i) for i in (1, 2, 3)]
