"""Torn writes and damaged tails, exhaustively (etcd's repair tests, TESTING.md section B).

One driver (``_reopen_and_check``) and one damage function per test: the log is built once
with the real writer, every damaged copy is reopened with the real ``open_wal``. A repaired
log must serve exactly the intact prefix, keep the non-zero bytes it cut in a
``.broken-<offset>`` copy, and then keep working: append, reopen, LSNs continue.
Also the multi-segment rules: damage in a sealed segment or a missing segment refuses to open,
and a leftover ``.tmp`` file is removed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.wal.corruption import CorruptionHarness, replay_note, seeded_rng
from tests.wal.harness import SMALL, record
from wal import WalConfig, WalCorruptionError
from wal.format import BROKEN_SUFFIX, SEGMENT_HEADER_SIZE, encode_frame, segment_name
from wal.recovery import Outcome

RECORDS = [record(i, size=16) for i in range(1, 21)]  # 20 frames of 56 bytes, one segment
EXTRA = [b"appended after repair 1", b"appended after repair 2"]
SECTOR_BYTES = 512
# Three sealed-or-active segments of ~7 frames each (140-byte frames in 1 KiB segments).
MULTI = WalConfig(segment_size_max_bytes=1024, record_size_max_bytes=256, compress_min_bytes=4096)
MULTI_RECORDS = [record(i, size=100) for i in range(1, 21)]


@pytest.fixture
async def one_segment(tmp_path: Path) -> CorruptionHarness:
    h = CorruptionHarness(tmp_path, SMALL)
    await h.build(RECORDS)
    assert len(h.pristine) == 1
    return h


@pytest.fixture
async def three_segments(tmp_path: Path) -> CorruptionHarness:
    h = CorruptionHarness(tmp_path, MULTI)
    await h.build(MULTI_RECORDS)
    assert len(h.pristine) == 3
    return h


def _intact_prefix(h: CorruptionHarness, damaged: bytes) -> int:
    """How many leading frames of the (single) segment are byte-for-byte unchanged."""
    original = h.pristine[-1][1]
    count = 0
    for span in h.frames:
        if damaged[span.start : span.end] != original[span.start : span.end]:
            break
        count += 1
    return count


async def _reopen_and_check(h: CorruptionHarness, label: str) -> None:
    """Reopens the damaged single-segment copy and checks the repair contract (see module)."""
    damaged = h.segment_path().read_bytes()
    intact = _intact_prefix(h, damaged)
    cut_from = h.frame(intact + 1).start if intact < len(h.frames) else h.used_end()
    cut = damaged[cut_from:]
    _, rows = h.analyze()
    assert [row.outcome for _, row in rows] in ([], [Outcome.END], [Outcome.TRUNCATE_TAIL]), label
    reopened = await h.reopen(append=EXTRA)
    assert reopened.payloads == h.payloads[:intact], label
    assert reopened.appended_lsns == [intact + 1, intact + 2], label
    copies = h.broken_copies()
    if cut.strip(b"\x00"):
        assert [p.name for p in copies] == [f"{segment_name(1)}{BROKEN_SUFFIX}{cut_from}"], label
        kept = copies[0].read_bytes()
        assert kept and cut.startswith(kept) and not cut[len(kept) :].strip(b"\x00"), label
        assert reopened.report.torn_tail is not None
        assert reopened.report.torn_tail.offset == cut_from, label
    else:
        assert copies == [], label
        assert reopened.report.torn_tail is None, label
    report, payloads = h.read_back()  # the appended log recovers with nothing to repair
    assert payloads == h.payloads[:intact] + EXTRA, label
    assert report.torn_tail is None and report.corruption is None, label
    assert h.broken_copies() == copies, label


async def test_recovery__torn_tail__zero_filled_from_every_offset(one_segment: CorruptionHarness) -> None:
    # Bytes [L, end) become zeros, as a torn write into the preallocated file leaves them.
    h = one_segment
    for length in range(SEGMENT_HEADER_SIZE, h.used_end() + 1):
        h.fresh_copy()
        h.corrupt(how="zero_from", offset=length)
        await _reopen_and_check(h, f"zeros from L={length}")


async def test_recovery__torn_tail__truncated_at_every_length(one_segment: CorruptionHarness) -> None:
    # The file is cut to L bytes (a short file, as a filesystem that lost its tail leaves it).
    h = one_segment
    for length in range(SEGMENT_HEADER_SIZE, h.used_end() + 1):
        h.fresh_copy()
        h.truncate(length)
        await _reopen_and_check(h, f"truncated to L={length}")


async def test_recovery__torn_tail__last_sector_zero_filled(one_segment: CorruptionHarness) -> None:
    # The 512-byte sector holding the last used byte is zeroed (etcd's isTornEntry case).
    h = one_segment
    sector_start = (h.used_end() - 1) // SECTOR_BYTES * SECTOR_BYTES
    assert sector_start > SEGMENT_HEADER_SIZE
    h.fresh_copy()
    h.corrupt(how="zero", offset=sector_start, length=SECTOR_BYTES)
    await _reopen_and_check(h, f"sector at {sector_start} zeroed")
    assert len(h.broken_copies()) == 1  # the sector starts inside a frame


async def test_recovery__preallocated_zero_tail__nothing_cut(one_segment: CorruptionHarness) -> None:
    # An undamaged log: the zero-filled rest of the segment is a clean end, no copy is made.
    h = one_segment
    h.fresh_copy()
    _, rows = h.analyze()
    assert [row.outcome for _, row in rows] == [Outcome.END]
    await _reopen_and_check(h, "undamaged")
    assert h.broken_copies() == []


async def test_recovery__garbage_after_last_frame__all_records_survive(
    one_segment: CorruptionHarness, base_seed: int, request: pytest.FixtureRequest
) -> None:
    # 1..1024 random bytes land after the last frame: inside the preallocated zeros, or past
    # the end of a file that ends at its last frame. Every record survives; garbage is kept.
    h, rng = one_segment, seeded_rng(base_seed, "garbage_after_last_frame")
    with replay_note(base_seed, request.node.nodeid):
        for trial in range(40):
            garbage = rng.randbytes(rng.randint(1, 1024))
            h.fresh_copy()
            if trial % 2:
                h.truncate(h.used_end())
                h.append_bytes(garbage)
            else:
                h.corrupt(how="write", offset=h.used_end(), data=garbage)
            await _reopen_and_check(h, f"trial {trial}: {len(garbage)} garbage bytes")
            assert len(h.broken_copies()) == (1 if garbage.strip(b"\x00") else 0)


async def test_recovery__middle_sector_zero_filled__refuses(one_segment: CorruptionHarness) -> None:
    # Zeros in the middle, valid frames after: those frames vouch that the zeroed one was
    # durable, so this is lost synced data, not a torn write. Nothing is served.
    h = one_segment
    h.fresh_copy()
    h.corrupt(how="zero", offset=SECTOR_BYTES, length=SECTOR_BYTES)
    first_bad = next(f for f in h.frames if f.end > SECTOR_BYTES)
    with pytest.raises(WalCorruptionError) as caught:
        await h.reopen()
    assert caught.value.segment_path == h.segment_path()
    assert caught.value.offset == first_bad.start
    assert h.broken_copies() == []


async def test_recovery__repair_interrupted_before__second_copy_gets_a_suffix(
    one_segment: CorruptionHarness,
) -> None:
    # A .broken copy left by an earlier, interrupted recovery of the same tail is not
    # overwritten: the new copy gets a numeric suffix.
    h = one_segment
    h.fresh_copy()
    last = h.frame(len(RECORDS))
    h.corrupt(frame=last.lsn, how="flip_bit", bit=8 * 45)
    stale = h.work / f"{segment_name(1)}{BROKEN_SUFFIX}{last.start}"
    stale.write_bytes(b"from the interrupted recovery")
    reopened = await h.reopen()
    assert reopened.payloads == RECORDS[:-1]
    assert stale.read_bytes() == b"from the interrupted recovery"
    assert [p.name for p in h.broken_copies()] == [stale.name, stale.name + ".1"]


@pytest.mark.xfail(strict=True, reason="known limit, see the report: the search for a "
                   "vouching frame also finds frame headers inside payloads")
async def test_recovery__torn_tail__payload_carrying_a_frame_header__still_truncated(
    tmp_path: Path,
) -> None:
    # The last record carries the bytes of a WAL frame (as a record holding a copy of another
    # log would) and its write tears. Only its own payload "vouches" for it, so it is still
    # an unacknowledged torn write: cut it, do not refuse to open.
    h = CorruptionHarness(tmp_path, SMALL)
    await h.build([record(1), record(2), b"copied log: " + encode_frame(10**6, 10**6 - 1, b"x")])
    h.fresh_copy()
    h.corrupt(how="zero_from", offset=h.frame(3).end - 1)
    reopened = await h.reopen()
    assert reopened.payloads == h.payloads[:2]


# ---- several segments ----------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["flip_header_bit", "flip_payload_bit", "flip_last_frame"])
async def test_recovery__sealed_segment__damaged_frame__refuses_naming_it(
    three_segments: CorruptionHarness, damage: str
) -> None:
    # Damage in a segment that has a successor is never a torn write, even in its last frame.
    h = three_segments
    frames = [f for f in h.frames if f.segment == 1]
    target = frames[-1] if damage == "flip_last_frame" else frames[2]
    h.fresh_copy()
    h.corrupt(frame=target.lsn, how="flip_bit", bit=8 * 45 if "payload" in damage else 70)
    _, rows = h.analyze()
    assert [row.outcome for _, row in rows][-1] == Outcome.FAIL_CORRUPT
    with pytest.raises(WalCorruptionError) as caught:
        await h.reopen()
    assert caught.value.segment_path == h.segment_path(1)
    assert caught.value.offset == target.start
    assert h.broken_copies() == []


async def test_recovery__sealed_segment__garbage_after_its_frames__refuses(
    three_segments: CorruptionHarness,
) -> None:
    # Non-zero bytes after the last frame of a sealed segment: it was synced before its
    # successor existed, so they are damage, never a torn write to cut.
    h = three_segments
    h.fresh_copy()
    h.corrupt(how="write", offset=h.used_end(0), data=b"\x01garbage", segment=0)
    with pytest.raises(WalCorruptionError) as caught:
        await h.reopen()
    assert caught.value.segment_path == h.segment_path(0)
    assert caught.value.offset == h.used_end(0)


async def test_recovery__sealed_segment__last_frame_zeroed__refuses_as_lsn_gap(
    three_segments: CorruptionHarness,
) -> None:
    # A zeroed last frame looks like a clean end of segment 1; the gap to segment 2's base
    # LSN gives it away. The error names the segment after the gap, at its header.
    h = three_segments
    last_of_first = [f for f in h.frames if f.segment == 0][-1]
    h.fresh_copy()
    h.corrupt(how="zero", offset=last_of_first.start, length=last_of_first.end - last_of_first.start,
              segment=0)
    with pytest.raises(WalCorruptionError) as caught:
        await h.reopen()
    assert caught.value.segment_path == h.segment_path(1)
    assert caught.value.offset == 0
    assert str(last_of_first.lsn - 1) in caught.value.reason


async def test_recovery__missing_middle_segment__refuses(three_segments: CorruptionHarness) -> None:
    # Segment 2 of 3 is gone: LSNs jump, recovery refuses at the segment after the gap.
    h = three_segments
    h.fresh_copy()
    h.segment_path(1).unlink()
    with pytest.raises(WalCorruptionError) as caught:
        await h.reopen()
    assert caught.value.segment_path == h.segment_path(2)
    assert caught.value.offset == 0


async def test_recovery__torn_tail_in_last_of_three_segments__truncated(
    three_segments: CorruptionHarness,
) -> None:
    # Only the last segment may be cut; the sealed ones are served whole.
    h = three_segments
    last = h.frames[-1]
    h.fresh_copy()
    h.corrupt(how="zero_from", offset=last.start + 30, segment=2)
    reopened = await h.reopen(append=EXTRA)
    assert reopened.payloads == MULTI_RECORDS[:-1]
    assert reopened.appended_lsns == [len(MULTI_RECORDS), len(MULTI_RECORDS) + 1]
    assert [p.name for p in h.broken_copies()] == [
        f"{h.segment_path(2).name}{BROKEN_SUFFIX}{last.start}"]
    assert (await h.reopen()).payloads == MULTI_RECORDS[:-1] + EXTRA


async def test_recovery__leftover_tmp_files__removed_on_open(three_segments: CorruptionHarness) -> None:
    # An unfinished roll leaves <name>.tmp (possibly with a header); open deletes it.
    h = three_segments
    h.fresh_copy()
    next_base = len(MULTI_RECORDS) + 1
    (h.work / f"{segment_name(next_base)}.tmp").write_bytes(bytes(MULTI.segment_size_max_bytes))
    (h.work / "spare.tmp").write_bytes(b"")
    reopened = await h.reopen(append=EXTRA)
    assert reopened.payloads == MULTI_RECORDS
    assert reopened.appended_lsns == [next_base, next_base + 1]
    assert sorted(p.name for p in reopened.report.temp_files) == [
        f"{segment_name(next_base)}.tmp", "spare.tmp"]
    assert h.temp_files() == []
