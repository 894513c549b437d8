"""Fuzz target: random and mutated bytes into the WAL's frame decoder, scanner and recovery.

Usage:
    python -m fuzz.wal_frames --seconds 300             # make fuzz
    python -m fuzz.wal_frames --seed 7 --replay 1234    # rerun one failing iteration

Iteration ``i`` of seed ``s`` draws everything from ``random.Random(f"{s}:{i}")``, so a
failure replays on its own. Inputs are random bytes (bare, or behind a valid segment header)
and valid segments built with ``wal.format`` then mutated: bit flips, overwrites, cuts,
insertions, and structured damage that re-seals CRCs so the checks behind the CRC are reached
(impossible field values, lengths far beyond the buffer, zstd frames that claim a huge
content size, trailing bytes after a zstd frame). Properties, for every input:

1. ``decode_frame_header(buf, o)`` returns a header or a reason string at any offset, never
   raises, and depends only on ``buf[o:o + 40]``.
2. ``scan_segment`` returns a scan or raises ``WalCorruptionError`` (offset 0, a bad segment
   header). Accepted frames tile the segment from byte 32 with consecutive LSNs, inside the
   buffer, with matching payload CRCs; the stop facts select a possible table row. Its memory
   use does not grow with the lengths frames claim (checked with ``tracemalloc``).
3. ``decode_payload`` returns exactly ``raw_len`` bytes or raises ``ValueError``, allocating
   at most about ``raw_len`` (no decompression bombs).
4. ``recovery.analyze`` on a directory holding the input never raises; ``recover`` then
   converges (a second analysis finds nothing to repair and the same last LSN), and
   ``iter_frames`` raises nothing but ``WalCorruptionError``.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import zstandard

from wal._io import FileIO
from wal.errors import WalCorruptionError
from wal.format import (
    FRAME_HEADER_SIZE,
    FRAME_MAGIC,
    RECORD_SIZE_LIMIT_BYTES,
    SEGMENT_HEADER_SIZE,
    FrameHeader,
    crc32c,
    decode_frame_header,
    decode_payload,
    decode_segment_header,
    encode_frame,
    encode_segment_header,
    segment_name,
)
from wal.recovery import Outcome, analyze, decide, recover
from wal.scan import SegmentScan, iter_frames, scan_segment

# Memory a check may use beyond the bytes it is entitled to (interpreter noise, small lists).
ALLOC_SLACK_BYTES = 256 * 1024
_U32_EDGES = (0, 1, 39, 40, 41, 255, 4096, 2**16, RECORD_SIZE_LIMIT_BYTES,
              RECORD_SIZE_LIMIT_BYTES + 1, 2**31, 2**32 - 1)
_U64_EDGES = (0, 1, 2, 3, 2**32, 2**63, 2**64 - 1)
_ZSTD_CLAIMS = (101, 4096, 2**20, 64 * 2**20, 2**40, 2**62, 2**64 - 2)


class FuzzFailure(AssertionError):
    """A property broke. Carries everything needed to replay it."""

    def __init__(self, seed: int, iteration: int, detail: str) -> None:
        self.seed = seed
        self.iteration = iteration
        super().__init__(f"{detail}\nreplay: python -m fuzz.wal_frames --seed {seed} "
                         f"--replay {iteration}")


class _NoSyncIO(FileIO):
    """Real files without fsync: the fuzzer checks recovery's logic, not durability."""

    def fsync(self, fd: int) -> None:
        pass

    def fdatasync(self, fd: int) -> None:
        pass

    def fsync_dir(self, path: Path) -> None:
        pass


# ---- inputs ------------------------------------------------------------------------------------


def _payload(rng: random.Random) -> bytes:
    size = rng.choice((0, 1, 7, 40, 200, 700))
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(size)
    if kind == 1:
        return bytes(size)
    if kind == 2:
        return (b"sluice " * (size // 7 + 1))[:size]
    return FRAME_MAGIC * (size // 4)  # stresses the search for vouching frames


def valid_segment(rng: random.Random, base_lsn: int = 1) -> bytes:
    """A well-formed segment: header, 0..8 frames (some zstd), then 0..1000 zero bytes."""
    compressor = zstandard.ZstdCompressor(level=1)
    buf = bytearray(encode_segment_header(base_lsn))
    for lsn in range(base_lsn, base_lsn + rng.randint(0, 8)):
        buf += encode_frame(lsn, rng.randint(0, lsn - 1), _payload(rng),
                            compressor=compressor if rng.random() < 0.5 else None,
                            compress_min_bytes=rng.choice((0, 64, 4096)))
    return bytes(buf) + bytes(rng.choice((0, 0, 8, 40, 200, 1000)))


def _frame_spans(buf: bytes) -> list[tuple[int, FrameHeader]]:
    try:
        return scan_segment(Path("x"), buf).frames
    except WalCorruptionError:
        return []


def _reseal(header: bytearray | bytes) -> bytes:
    """A frame header with its CRC recomputed over bytes 8..40."""
    header = bytes(header)
    return header[:4] + struct.pack("<I", crc32c(header[8:FRAME_HEADER_SIZE])) + header[8:]


def _mutate_field(rng: random.Random, buf: bytearray) -> None:
    """Sets one header field of one frame to an edge value and re-seals the header CRC."""
    spans = _frame_spans(bytes(buf))
    if not spans:
        return
    offset, _ = rng.choice(spans)
    header = bytearray(buf[offset : offset + FRAME_HEADER_SIZE])
    field, fmt, edges = rng.choice([(8, "<Q", _U64_EDGES), (16, "<Q", _U64_EDGES),
                                    (24, "<I", _U32_EDGES), (28, "<I", _U32_EDGES),
                                    (32, "<B", (0, 1, 2, 255)), (33, "<B", (0, 1, 128))])
    struct.pack_into(fmt, header, field, rng.choice(edges))
    buf[offset : offset + FRAME_HEADER_SIZE] = _reseal(header)


def _zstd_claiming(content: bytes, claimed: int) -> bytes:
    real = zstandard.ZstdCompressor(level=1, write_content_size=True).compress(content)
    descriptor = real[4]
    size_len = {0: 1, 1: 2, 2: 4, 3: 8}[descriptor >> 6]
    return real[:4] + bytes([0xC0 | (descriptor & 0x3F)]) + struct.pack("<Q", claimed) + \
        real[5 + size_len :]


def _mutate_zstd_payload(rng: random.Random, buf: bytearray) -> None:
    """Replaces one frame's payload by a hostile zstd payload with valid CRCs: a content size
    claim far beyond raw_len (a bomb), or trailing bytes after a correct frame."""
    spans = _frame_spans(bytes(buf))
    if not spans:
        return
    offset, old = rng.choice(spans)
    content = rng.choice((b"a" * 100, rng.randbytes(100), b""))
    if rng.random() < 0.6:
        stored = _zstd_claiming(content or b"a", rng.choice(_ZSTD_CLAIMS))
    else:
        stored = zstandard.ZstdCompressor(level=1).compress(content) + rng.randbytes(
            rng.randint(1, 30))
    fields = struct.pack("<QQIIB3sI", old.lsn, old.durable_lsn, len(stored), len(content), 1,
                         b"\x00" * 3, crc32c(stored))
    frame = _reseal(FRAME_MAGIC + b"\x00" * 4 + fields) + stored
    buf[offset : offset + old.frame_size] = frame


def _mutate_bytes(rng: random.Random, buf: bytearray) -> None:
    """Unstructured damage: flips, overwrites, zeroing, cuts, insertions, appended garbage."""
    if not buf:
        buf += rng.randbytes(rng.randint(1, 64))
        return
    at = rng.randrange(len(buf))
    kind = rng.randrange(7)
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(buf))
            buf[position] ^= 1 << rng.randrange(8)
    elif kind == 1:
        chunk = rng.randbytes(rng.randint(1, 64))
        buf[at : at + len(chunk)] = chunk
    elif kind == 2:
        length = rng.randint(1, 512)
        buf[at : at + length] = bytes(len(buf[at : at + length]))
    elif kind == 3:
        del buf[at:]
    elif kind == 4:
        buf[at:at] = rng.randbytes(rng.randint(1, 40))
    elif kind == 5:
        del buf[at : at + rng.randint(1, 40)]
    else:
        buf += rng.randbytes(rng.randint(1, 1024))


MUTATORS: tuple[Callable[[random.Random, bytearray], None], ...] = (
    _mutate_bytes, _mutate_bytes, _mutate_field, _mutate_zstd_payload)


def make_input(rng: random.Random) -> list[bytes]:
    """One or two segment images (log order); at most one of them damaged."""
    kind = rng.randrange(10)
    if kind == 0:
        return [rng.randbytes(rng.randint(0, 300))]
    if kind == 1:
        return [encode_segment_header(rng.randint(1, 5)) + rng.randbytes(rng.randint(0, 300))]
    first = valid_segment(rng)
    files = [first]
    if kind == 2:
        files.append(valid_segment(rng, 1 + len(_frame_spans(first))))
    victim = rng.randrange(len(files))
    buf = bytearray(files[victim])
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        rng.choice(MUTATORS)(rng, buf)
    files[victim] = bytes(buf)
    return files


# ---- properties --------------------------------------------------------------------------------


def _measure(fn: Callable[[], object]) -> tuple[object, int]:
    """Runs ``fn``; returns its result (or the exception it raised) and the peak bytes it
    allocated on top of what was allocated before."""
    before, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    try:
        result: object = fn()
    except Exception as exc:  # classified by the caller
        result = exc
    _, peak = tracemalloc.get_traced_memory()
    return result, peak - before


def check_frame_headers(rng: random.Random, buf: bytes) -> None:
    """Property 1 at a sample of offsets, every frame magic and the last 41 positions."""
    offsets = {rng.randint(0, len(buf)) for _ in range(32)}
    offsets.update(range(max(0, len(buf) - FRAME_HEADER_SIZE), len(buf) + 1))
    position = buf.find(FRAME_MAGIC)
    while position != -1 and len(offsets) < 200:
        offsets.add(position)
        position = buf.find(FRAME_MAGIC, position + 1)
    for offset in offsets:
        result = decode_frame_header(buf, offset)
        assert isinstance(result, FrameHeader | str), result
        window = decode_frame_header(memoryview(buf)[offset : offset + FRAME_HEADER_SIZE], 0)
        assert window == result, (offset, result, window)


def check_scan(buf: bytes) -> SegmentScan | None:
    """Property 2; returns the scan, or None when the segment header is invalid."""
    scan, allocated = _measure(lambda: scan_segment(Path("fuzz.wal"), buf))
    assert allocated <= 2 * len(buf) + ALLOC_SLACK_BYTES, f"scan allocated {allocated} bytes"
    if isinstance(scan, WalCorruptionError):
        assert scan.offset == 0, scan
        assert isinstance(decode_segment_header(buf), str)
        return None
    if isinstance(scan, BaseException):
        raise scan
    assert isinstance(scan, SegmentScan)
    offset, lsn = SEGMENT_HEADER_SIZE, scan.base_lsn
    for frame_offset, header in scan.frames:
        assert (frame_offset, header.lsn) == (offset, lsn), (frame_offset, header)
        offset, lsn = offset + header.frame_size, lsn + 1
        assert offset <= len(buf)
        assert crc32c(buf[frame_offset + FRAME_HEADER_SIZE : offset]) == header.payload_crc
    assert scan.end_offset == offset
    assert (scan.stop is None) == (offset == len(buf)), scan.stop
    if scan.stop is not None:
        stop = scan.stop
        assert stop.offset == offset
        for last in (False, True):
            facts = (stop.header_ok, stop.length_ok, stop.payload_ok, stop.rest_zero, last,
                     stop.vouched)
            assert decide(facts).outcome not in (Outcome.OK, Outcome.IMPOSSIBLE), (stop, last)
    return scan


def check_payloads(buf: bytes, scan: SegmentScan) -> Counter[str]:
    """Property 3 for every frame the scan accepted."""
    seen: Counter[str] = Counter()
    for offset, header in scan.frames:
        stored = buf[offset + FRAME_HEADER_SIZE : offset + header.frame_size]
        raw, allocated = _measure(lambda h=header, s=stored: decode_payload(h, s))
        limit = header.raw_len + header.stored_len + ALLOC_SLACK_BYTES
        assert allocated <= limit, (f"decode_payload allocated {allocated} bytes for a "
                                    f"{header.raw_len}-byte record ({header})")
        if isinstance(raw, ValueError):
            seen["payload_refused"] += 1
            continue
        if isinstance(raw, BaseException):
            raise AssertionError(f"decode_payload raised {raw!r} for {header}") from raw
        assert isinstance(raw, bytes) and len(raw) == header.raw_len, header
        seen["payload_ok"] += 1
    return seen


def check_directory(files: list[bytes], directory: Path) -> str:
    """Property 4 on a directory holding ``files`` as consecutive segments."""
    for old in directory.iterdir():
        old.unlink()
    for index, buf in enumerate(files):
        base = decode_segment_header(buf)
        name = segment_name(base if isinstance(base, int) and base < 10**20 else index + 1)
        (directory / name).write_bytes(buf)
    report = analyze(directory)
    try:
        served = len(list(iter_frames(directory)))
    except WalCorruptionError:
        served = None  # e.g. a CRC-valid zstd payload that does not decode
    if report.corruption is not None:
        assert report.corruption.segment_path.parent == directory
        return "refused"
    assert served in (None, sum(len(scan.frames) for scan in report.scans)), served
    recover(_NoSyncIO(), directory)
    again = analyze(directory)
    assert again.corruption is None and again.torn_tail is None, (again.corruption, again.torn_tail)
    assert again.last_lsn == report.last_lsn
    return "cut" if report.torn_tail is not None else "clean"


def one_iteration(seed: int, iteration: int, directory: Path) -> Counter[str]:
    """Runs every property on input ``iteration`` of ``seed``; raises ``FuzzFailure``."""
    rng = random.Random(f"{seed}:{iteration}")
    files = make_input(rng)
    seen: Counter[str] = Counter()
    try:
        for buf in files:
            check_frame_headers(rng, buf)
            scan = check_scan(buf)
            seen["bad_segment_header" if scan is None else "scanned"] += 1
            if scan is not None:
                seen += check_payloads(buf, scan)
        seen["dir_" + check_directory(files, directory)] += 1
    except Exception as exc:
        detail = "".join(f"\n  file {i}: {len(b)} bytes: {b[:96].hex()}" for i, b in
                         enumerate(files))
        raise FuzzFailure(seed, iteration, f"{type(exc).__name__}: {exc}{detail}") from exc
    return seen


def run(seconds: float, seed: int, directory: Path, *, start: int = 0,
        iterations: int | None = None) -> Counter[str]:
    """Fuzzes for ``seconds`` (or exactly ``iterations`` inputs from ``start``); returns
    counts of what was seen. Raises ``FuzzFailure`` at the first broken property."""
    deadline = time.monotonic() + seconds
    stats: Counter[str] = Counter()
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        iteration = start
        while (time.monotonic() < deadline if iterations is None
               else iteration < start + iterations):
            stats += one_iteration(seed, iteration, directory)
            stats["iterations"] += 1
            iteration += 1
    finally:
        if not tracing:
            tracemalloc.stop()
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.wal_frames", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run")
    parser.add_argument("--seed", type=int, default=None, help="base seed (default: random)")
    parser.add_argument("--replay", type=int, default=None, metavar="I",
                        help="run only iteration I of --seed")
    args = parser.parse_args(argv)
    seed = random.randrange(2**32) if args.seed is None else args.seed
    sys.stdout.write(f"fuzz.wal_frames: --seed {seed}\n")
    with tempfile.TemporaryDirectory(prefix="sluice-fuzz-") as tmp:
        try:
            if args.replay is not None:
                stats = run(0, seed, Path(tmp), start=args.replay, iterations=1)
            else:
                stats = run(args.seconds, seed, Path(tmp))
        except FuzzFailure as failure:
            sys.stdout.write(f"FAILED: {failure}\n")
            return 1
    sys.stdout.write("ok: " + ", ".join(f"{k}={v}" for k, v in sorted(stats.items())) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
