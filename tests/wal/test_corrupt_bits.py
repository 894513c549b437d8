"""Flipped bits, every one of them (Kafka's corrupt-log tests, TESTING.md section C).

A small one-segment log, written one fsynced append at a time, so every frame after the first
records its predecessor as durable (``durable_lsn = lsn - 1``). Flip one bit, reopen, and
require exactly one of two outcomes, with the decision-table row that fits the damage:

- the bit is in the segment header, or in a frame that a later frame vouches for
  -> ``WalCorruptionError`` naming the segment and the damaged frame's start; nothing is
  served and nothing on disk is touched;
- the bit is in the last frame, in a frame no later frame vouches for, or in the zeros
  after the last frame -> the tail is cut from that frame on and kept in a
  ``.broken-<offset>`` copy; every earlier record is served.

Never silently wrong data: a single flipped bit always fails a CRC.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.wal.corruption import CorruptionHarness, FrameSpan, replay_note, seeded_rng
from tests.wal.harness import SMALL, record
from wal import WalCorruptionError
from wal.format import (
    BROKEN_SUFFIX,
    FRAME_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    Codec,
    FrameHeader,
    decode_frame_header,
)
from wal.recovery import Row, decide

RECORDS = [record(i, size=13) for i in range(1, 5)]  # 4 frames of 53 bytes: 1952 bits in all
# Facts: header_ok, length_ok, payload_ok, rest_zero, last_segment, vouched.
HEADER_VOUCHED = decide((False, False, False, False, True, True))
PAYLOAD_VOUCHED = decide((True, True, False, False, True, True))
HEADER_TORN = decide((False, False, False, False, True, False))
PAYLOAD_TORN = decide((True, True, False, False, True, False))


@pytest.fixture
async def small_log(tmp_path: Path) -> CorruptionHarness:
    h = CorruptionHarness(tmp_path, SMALL)
    await h.build(RECORDS)
    return h


def _frame_at(h: CorruptionHarness, position: int) -> FrameSpan | None:
    return next((f for f in h.frames if f.start <= position < f.end), None)


def _vouched(h: CorruptionHarness, frame: FrameSpan) -> bool:
    """Whether a later frame records ``frame`` as durable (its ``durable_lsn`` reaches it)."""
    return any(f.durable_lsn >= frame.lsn for f in h.frames if f.lsn > frame.lsn)


async def _flip_and_check(h: CorruptionHarness, bit: int) -> None:
    """Flips bit number ``bit`` of the segment file and checks the outcome its place implies."""
    h.fresh_copy()
    h.corrupt(how="flip_bit", offset=0, bit=bit)
    position, label = bit // 8, f"bit {bit} (byte {bit // 8})"
    frame = _frame_at(h, position)
    if position < SEGMENT_HEADER_SIZE:
        await _expect_refusal(h, 0, None, label)
    elif frame is not None and _vouched(h, frame):
        in_header = position - frame.start < FRAME_HEADER_SIZE
        await _expect_refusal(h, frame.start, HEADER_VOUCHED if in_header else PAYLOAD_VOUCHED,
                              label)
    elif frame is not None:
        in_header = position - frame.start < FRAME_HEADER_SIZE
        await _expect_truncation(h, frame.start, HEADER_TORN if in_header else PAYLOAD_TORN,
                                 label)
    else:
        await _expect_truncation(h, h.used_end(), HEADER_TORN, label)


async def _expect_refusal(h: CorruptionHarness, offset: int, row: Row | None, label: str) -> None:
    """open_wal refuses at (segment, offset) with ``row``'s note, and changes nothing."""
    damaged = h.segment_path().read_bytes()
    _, rows = h.analyze()
    assert rows == ([] if row is None else [(h.segment_path(), row)]), label
    with pytest.raises(WalCorruptionError) as caught:
        await h.reopen()
    assert caught.value.segment_path == h.segment_path(), label
    assert caught.value.offset == offset, label
    if row is not None:
        assert caught.value.reason.endswith(f"({row.note})"), label
    assert h.segment_path().read_bytes() == damaged, label
    assert h.broken_copies() == [], label


async def _expect_truncation(h: CorruptionHarness, start: int, row: Row, label: str) -> None:
    """open_wal serves the records before ``start``, cuts from ``start`` and keeps a copy."""
    damaged = h.segment_path().read_bytes()
    _, rows = h.analyze()
    assert rows == [(h.segment_path(), row)], label
    reopened = await h.reopen()
    served = sum(1 for f in h.frames if f.end <= start)
    assert reopened.payloads == h.payloads[:served], label
    tail = reopened.report.torn_tail
    assert tail is not None and tail.offset == start and tail.note == row.note, label
    copies = h.broken_copies()
    assert [p.name for p in copies] == [f"{h.segment_path().name}{BROKEN_SUFFIX}{start}"], label
    kept = copies[0].read_bytes()
    assert damaged[start:] == kept + bytes(len(damaged) - start - len(kept)), label
    assert h.segment_path().read_bytes() == damaged[:start] + bytes(len(damaged) - start), label


async def test_recovery__flipped_bit__segment_header__refuses_at_offset_0(
    small_log: CorruptionHarness,
) -> None:
    # All 256 bits of the 32-byte header: a named segment's header was synced, so any
    # damage there is corruption (no frame-level row applies).
    for bit in range(SEGMENT_HEADER_SIZE * 8):
        await _flip_and_check(small_log, bit)


async def test_recovery__flipped_bit__vouched_frame__refuses_at_its_start(
    small_log: CorruptionHarness,
) -> None:
    # Every bit of frames 1..3: frame k+1 records k as durable, so damage is never cut.
    h = small_log
    for bit in range(h.frame(1).start * 8, h.frame(len(RECORDS)).start * 8):
        await _flip_and_check(h, bit)


async def test_recovery__flipped_bit__last_frame__tail_truncated(small_log: CorruptionHarness) -> None:
    # Every bit of the last frame: nothing vouches for it, so it is a torn tail.
    h = small_log
    for bit in range(h.frame(len(RECORDS)).start * 8, h.used_end() * 8):
        await _flip_and_check(h, bit)


async def test_recovery__flipped_bit__zeros_after_last_frame__cut_nothing_lost(
    small_log: CorruptionHarness,
) -> None:
    # A flip in the preallocated zeros: every record is served, the stray byte is kept aside.
    h = small_log
    for bit in [*range(h.used_end() * 8, h.used_end() * 8 + 100, 7), 8 * SMALL.segment_size_max_bytes - 1]:
        await _flip_and_check(h, bit)


async def test_recovery__flipped_bit__seeded_sample_of_a_larger_log_with_zstd(
    tmp_path: Path, base_seed: int, request: pytest.FixtureRequest
) -> None:
    # 24 records, every third one compressible (stored as zstd): 400 bits sampled by seed.
    payloads = [record(i, size=700) if i % 3 == 0 else record(i, size=40) for i in range(1, 25)]
    h = CorruptionHarness(tmp_path, SMALL)
    await h.build(payloads)
    header = decode_frame_header(h.pristine[0][1], h.frame(3).start)
    assert isinstance(header, FrameHeader) and header.codec == Codec.ZSTD
    rng = seeded_rng(base_seed, "flipped_bit_sample")
    with replay_note(base_seed, request.node.nodeid):
        for bit in sorted(rng.sample(range(h.used_end() * 8), 400)):
            await _flip_and_check(h, bit)


async def test_recovery__flipped_bit__inside_last_batch__unvouched_frames_cut_known_limit(
    tmp_path: Path,
) -> None:
    # Frames of one group commit share durable_lsn (the previous batch's last LSN). Damage
    # inside the last batch is therefore not vouched for: recovery cuts from the damaged frame
    # (the documented limit: it cannot tell lost synced data from a torn write). Damage in an
    # earlier batch is vouched for by the last batch and refused.
    h = CorruptionHarness(tmp_path, SMALL)
    await h.build([record(i, size=13) for i in range(1, 9)], batch=4)
    await _flip_and_check(h, h.frame(6).start * 8 + 8 * 50)
    await _flip_and_check(h, h.frame(3).start * 8 + 8 * 50)
    h.fresh_copy()
    h.corrupt(frame=6, how="flip_bit", bit=8 * 50)
    assert (await h.reopen()).payloads == h.payloads[:5]
