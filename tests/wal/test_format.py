"""The WAL's on-disk format, version 1 (``wal/format.py``): CRC32C, segment names and headers,
frames, payload decoding, and a golden segment pinned byte for byte.

The golden file ``tests/fixtures/wal/v1_small.wal`` is regenerated only on purpose:
``SLUICE_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/wal/test_format.py -k golden``.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import tracemalloc
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from wal import WalConfig, open_wal
from wal.format import (
    FORMAT_VERSION,
    FRAME_HEADER,
    FRAME_HEADER_SIZE,
    FRAME_MAGIC,
    RECORD_SIZE_LIMIT_BYTES,
    SEGMENT_HEADER_SIZE,
    SEGMENT_MAGIC,
    Codec,
    FrameHeader,
    crc32c,
    decode_frame_header,
    decode_payload,
    decode_segment_header,
    encode_frame,
    encode_segment_header,
    parse_segment_name,
    payload_ok,
    segment_name,
)
from wal.scan import scan_segment

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "wal" / "v1_small.wal"
GOLDEN_SIZE_BYTES = 4096
GOLDEN_ZSTD_LEVEL = 3
REGEN_ENV = "SLUICE_REGEN_GOLDEN"
SMALL_CONFIG = WalConfig(segment_size_max_bytes=GOLDEN_SIZE_BYTES, record_size_max_bytes=1024)


# ---- helpers: headers with valid CRCs around invalid fields ----------------------------------


def _reseal_segment_header(header: bytes) -> bytes:
    """Recomputes the segment header CRC so that only the field under test is wrong."""
    return header[:28] + struct.pack("<I", crc32c(header[:28]))


def _frame_header(lsn: int, durable_lsn: int, stored_len: int, raw_len: int, codec: int = 0,
                  reserved: bytes = b"\x00" * 3, payload_crc: int = 0,
                  magic: bytes = FRAME_MAGIC) -> bytes:
    """A frame header with any field values and a correct header CRC (bypasses the asserts
    of ``encode_frame``)."""
    fields = struct.pack("<QQIIB3sI", lsn, durable_lsn, stored_len, raw_len, codec, reserved,
                         payload_crc)
    return magic + struct.pack("<I", crc32c(fields)) + fields


def _zstd_frame_claiming(content: bytes, claimed_size: int) -> bytes:
    """A zstd frame of ``content`` whose header claims ``claimed_size`` decoded bytes (a
    decompression bomb's header: the content size field says huge, the data is tiny)."""
    real = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(content)
    descriptor = real[4]
    assert descriptor & 0x20  # single-segment frame: window descriptor absent
    assert descriptor & 0x03 == 0  # no dictionary ID field
    size_field_len = {0: 1, 1: 2, 2: 4, 3: 8}[descriptor >> 6]
    # 8-byte content size field, single segment, the rest of the descriptor unchanged.
    rest = real[5 + size_field_len :]
    return real[:4] + bytes([0xC0 | (descriptor & 0x3F)]) + struct.pack("<Q", claimed_size) + rest


# ---- CRC32C ------------------------------------------------------------------------------------


def test_crc32c__check_value__is_castagnoli() -> None:
    # The standard known answer of CRC-32C for b"123456789"; a different polynomial fails.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(b"6789", crc32c(b"12345")) == 0xE3069283  # continuation
    assert crc32c(memoryview(b"123456789")) == 0xE3069283


# ---- segment names -----------------------------------------------------------------------------


@pytest.mark.parametrize("base_lsn", [1, 2, 9, 10, 12345, 10**19, 10**20 - 1])
def test_segment_name__round_trip__twenty_digits(base_lsn: int) -> None:
    # name -> base LSN -> name, across the whole 20-digit range.
    name = segment_name(base_lsn)
    assert len(name) == 24
    assert name.endswith(".wal")
    assert parse_segment_name(name) == base_lsn


def test_segment_name__lexical_order__is_log_order() -> None:
    # Zero padding makes a plain directory sort the segments in LSN order.
    bases = [1, 2, 10, 99, 100, 123456789, 10**19]
    assert sorted(segment_name(b) for b in bases) == [segment_name(b) for b in sorted(bases)]


@pytest.mark.parametrize("name", [
    "", ".wal", "1.wal", "0" * 19 + ".wal", "0" * 21 + "1.wal",
    "0" * 20 + ".wal",  # base LSN 0
    "0" * 19 + "1.WAL", "0" * 19 + "1.wal.tmp", "0" * 19 + "1.wal.broken-32",
    "0" * 19 + "1.wal.broken-32.1", "0" * 19 + "1", "0" * 19 + "1.log", "0" * 19 + "1.wal\n",
    "spare.tmp", "-" + "0" * 18 + "1.wal", "+" + "0" * 18 + "1.wal", " " + "0" * 18 + "1.wal",
    "0" * 18 + "x1.wal", "0" * 18 + "1 .wal", "0" * 19 + "1..wal",
])
def test_segment_name__not_a_segment__rejected(name: str) -> None:
    # Temp files, broken copies and near misses are never taken for segments.
    assert parse_segment_name(name) is None


@pytest.mark.parametrize("name", [
    "0" * 19 + "\u00b2.wal",  # superscript two: isdigit() but int() raises
    "\u0660" * 19 + "\u0661.wal",  # Arabic-Indic digits: int() reads them as 1
    "\uff10" * 19 + "\uff11.wal",  # full-width digits: int() reads them as 1
], ids=["superscript_two", "arabic_indic_digits", "fullwidth_digits"])
def test_segment_name__non_ascii_digits__rejected_without_raising(name: str) -> None:
    # A stray file in the log directory must never raise from listing, nor alias segment 1.
    assert parse_segment_name(name) is None


async def test_segment_name__stray_non_ascii_file_in_log_dir__open_ignores_it(
    tmp_path: Path,
) -> None:
    # Listing the log directory must not trip over a file that merely looks numeric.
    async with open_wal(tmp_path, SMALL_CONFIG) as wal:
        await wal.append(b"one")
    (tmp_path / ("0" * 19 + "\u00b2.wal")).write_bytes(b"not a segment")
    (tmp_path / ("\uff10" * 19 + "\uff11.wal")).write_bytes(b"not a segment either")
    async with open_wal(tmp_path, SMALL_CONFIG) as wal:
        assert [f.payload for f in wal.read_from(1)] == [b"one"]


@pytest.mark.parametrize("base_lsn", [0, 10**20])
def test_segment_name__out_of_range__asserts(base_lsn: int) -> None:
    # LSN 0 does not exist and 21 digits would break the lexical order: programmer errors.
    with pytest.raises(AssertionError):
        segment_name(base_lsn)


# ---- segment header ----------------------------------------------------------------------------


def test_segment_header__encode_decode__round_trip() -> None:
    # Layout per the spec: magic, version, reserved, base LSN, reserved, CRC of bytes 0..28.
    header = encode_segment_header(42)
    assert len(header) == SEGMENT_HEADER_SIZE
    assert header[:8] == SEGMENT_MAGIC
    assert header[8] == FORMAT_VERSION
    assert struct.unpack_from("<Q", header, 16)[0] == 42
    assert header[9:16] == bytes(7)
    assert header[24:28] == bytes(4)
    assert struct.unpack_from("<I", header, 28)[0] == crc32c(header[:28])
    assert decode_segment_header(header) == 42
    assert decode_segment_header(header + b"frames follow") == 42


def _bad_segment_headers() -> list[tuple[str, bytes, str]]:
    good = encode_segment_header(7)
    flipped_crc = good[:28] + bytes([good[28] ^ 1]) + good[29:]
    return [
        ("truncated", good[:31], "truncated"),
        ("empty", b"", "truncated"),
        ("bad_magic", b"SLUICEWX" + good[8:], "bad segment magic"),
        ("crc", flipped_crc, "CRC mismatch"),
        ("field_changed_crc_stale", good[:16] + struct.pack("<Q", 8) + good[24:], "CRC mismatch"),
        ("version_2", _reseal_segment_header(good[:8] + b"\x02" + good[9:]), "version 2"),
        ("version_0", _reseal_segment_header(good[:8] + b"\x00" + good[9:]), "version 0"),
        ("reserved7", _reseal_segment_header(good[:9] + b"\x01" + good[10:]), "reserved"),
        ("reserved4", _reseal_segment_header(good[:27] + b"\x80" + good[28:]), "reserved"),
        ("base_lsn_0", _reseal_segment_header(good[:16] + bytes(8) + good[24:]), "base LSN is 0"),
    ]


@pytest.mark.parametrize(("buf", "reason"), [(b, r) for _, b, r in _bad_segment_headers()],
                         ids=[i for i, _, _ in _bad_segment_headers()])
def test_segment_header__invalid__reason_names_the_field(buf: bytes, reason: str) -> None:
    # Each field is damaged alone (CRC recomputed where needed) so each reason is reached.
    result = decode_segment_header(buf)
    assert isinstance(result, str)
    assert reason in result


# ---- frames: encode / decode -------------------------------------------------------------------


def test_frame__raw__round_trip_at_an_offset() -> None:
    # A raw frame decodes from inside a larger buffer; every field comes back.
    payload = b"hello, sluice"
    frame = encode_frame(5, 4, payload)
    buf = b"\xaa" * 100 + frame + b"\xbb" * 7
    header = decode_frame_header(buf, 100)
    assert header == FrameHeader(5, 4, len(payload), len(payload), Codec.RAW, crc32c(payload))
    assert header.frame_size == len(frame) == FRAME_HEADER_SIZE + len(payload)
    stored = buf[100 + FRAME_HEADER_SIZE : 100 + header.frame_size]
    assert payload_ok(header, stored)
    assert decode_payload(header, stored) == payload


def test_frame__zstd__compressed_when_smaller_and_at_threshold() -> None:
    # compress_min_bytes is inclusive; the stored payload is a zstd frame of the record.
    compressor = zstandard.ZstdCompressor(level=3)
    payload = b"sluice " * 100
    frame = encode_frame(9, 0, payload, compressor=compressor, compress_min_bytes=len(payload))
    header = decode_frame_header(frame, 0)
    assert isinstance(header, FrameHeader)
    assert header.codec == Codec.ZSTD
    assert header.raw_len == len(payload)
    assert header.stored_len < len(payload)
    stored = frame[FRAME_HEADER_SIZE:]
    assert payload_ok(header, stored)
    assert decode_payload(header, stored) == payload


@pytest.mark.parametrize("case", ["below_threshold", "incompressible", "no_compressor", "empty"])
def test_frame__zstd__not_used_when_below_threshold_or_not_smaller(case: str) -> None:
    # Each case leaves the payload raw: too short, would grow, no compressor, or empty.
    compressor = zstandard.ZstdCompressor(level=3)
    payload = {"below_threshold": b"a" * 100, "no_compressor": b"a" * 100, "empty": b"",
               "incompressible": random.Random(1).randbytes(1000)}[case]
    threshold = 101 if case == "below_threshold" else 0
    frame = encode_frame(1, 0, payload, compressor=None if case == "no_compressor" else compressor,
                         compress_min_bytes=threshold)
    header = decode_frame_header(frame, 0)
    assert isinstance(header, FrameHeader)
    assert header.codec == Codec.RAW
    assert header.stored_len == header.raw_len == len(payload)
    assert frame[FRAME_HEADER_SIZE:] == payload


@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=3000) | st.text(max_size=1500).map(str.encode),
       lsn=st.integers(1, 2**64 - 1), data=st.data(), compress=st.booleans())
def test_frame__any_payload__round_trips(payload: bytes, lsn: int, data: st.DataObject,
                                         compress: bool) -> None:
    # Property: encode -> decode header -> CRC -> decode payload gives back every field.
    durable = data.draw(st.integers(0, lsn - 1))
    compressor = zstandard.ZstdCompressor(level=1) if compress else None
    frame = encode_frame(lsn, durable, payload, compressor=compressor, compress_min_bytes=16)
    header = decode_frame_header(frame, 0)
    assert isinstance(header, FrameHeader), header
    assert (header.lsn, header.durable_lsn, header.raw_len) == (lsn, durable, len(payload))
    assert header.frame_size == len(frame)
    assert payload_ok(header, frame[FRAME_HEADER_SIZE:])
    assert decode_payload(header, frame[FRAME_HEADER_SIZE:]) == payload


# ---- frames: rejection -------------------------------------------------------------------------


def _bad_frame_headers() -> list[tuple[str, bytes, str]]:
    good = encode_frame(5, 4, b"abc")[:FRAME_HEADER_SIZE]
    return [
        ("truncated", good[:39], "truncated"),
        ("bad_magic", b"SLFX" + good[4:], "bad frame magic"),
        ("zero_magic", bytes(FRAME_HEADER_SIZE), "bad frame magic"),
        ("header_crc", good[:4] + bytes([good[4] ^ 0x10]) + good[5:], "CRC mismatch"),
        ("field_changed_crc_stale", good[:8] + struct.pack("<Q", 6) + good[16:], "CRC mismatch"),
        ("lsn_0", _frame_header(0, 0, 3, 3), "impossible LSN"),
        ("durable_equals_lsn", _frame_header(5, 5, 3, 3), "impossible LSN"),
        ("durable_above_lsn", _frame_header(5, 2**64 - 1, 3, 3), "impossible LSN"),
        ("codec_2", _frame_header(5, 4, 3, 3, codec=2), "unknown codec"),
        ("codec_255", _frame_header(5, 4, 3, 3, codec=255), "unknown codec"),
        ("reserved", _frame_header(5, 4, 3, 3, reserved=b"\x00\x01\x00"), "reserved"),
        ("raw_len_over_limit", _frame_header(5, 4, 3, RECORD_SIZE_LIMIT_BYTES + 1, codec=1),
         "exceeds limit"),
        ("stored_len_over_limit", _frame_header(5, 4, RECORD_SIZE_LIMIT_BYTES + 1, 3, codec=1),
         "exceeds limit"),
        ("u32_max_lengths", _frame_header(5, 4, 2**32 - 1, 2**32 - 1), "exceeds limit"),
        ("raw_lengths_differ", _frame_header(5, 4, 3, 4), "stored_len != raw_len"),
    ]


@pytest.mark.parametrize(("buf", "reason"), [(b, r) for _, b, r in _bad_frame_headers()],
                         ids=[i for i, _, _ in _bad_frame_headers()])
def test_frame_header__invalid__reason_names_the_check(buf: bytes, reason: str) -> None:
    # Each rule of the frame-validity spec (1-3) is broken alone, CRC recomputed if needed.
    result = decode_frame_header(buf, 0)
    assert isinstance(result, str), result
    assert reason in result


@pytest.mark.parametrize("byte", range(4, FRAME_HEADER_SIZE))
def test_frame_header__any_flipped_bit_after_magic__crc_mismatch(byte: int) -> None:
    # The header CRC covers bytes 8..40 and is itself at 4..8: one flipped bit always shows.
    good = bytearray(encode_frame(7, 6, b"payload")[:FRAME_HEADER_SIZE])
    for bit in range(8):
        damaged = bytearray(good)
        damaged[byte] ^= 1 << bit
        assert decode_frame_header(bytes(damaged), 0) == "frame header CRC mismatch"


def test_frame_header__configured_limit__applies_to_both_lengths() -> None:
    # record_size_max_bytes (WalConfig) tightens the absolute ceiling for raw and stored.
    header = _frame_header(5, 4, 100, 2049, codec=1)
    assert "exceeds limit 2048" in decode_frame_header(header, 0, record_size_max_bytes=2048)
    assert isinstance(decode_frame_header(header, 0, record_size_max_bytes=2049), FrameHeader)


def test_frame_header__claims_more_than_the_buffer__reads_only_40_bytes() -> None:
    # The header decoder never looks past its 40 bytes: fitting the file is the scanner's job.
    header = _frame_header(5, 4, RECORD_SIZE_LIMIT_BYTES, RECORD_SIZE_LIMIT_BYTES)
    result = decode_frame_header(memoryview(header), 0)
    assert isinstance(result, FrameHeader)
    assert result.stored_len == RECORD_SIZE_LIMIT_BYTES
    assert decode_frame_header(b"\x00" + header[:-1], 1) == "frame header truncated"


def test_scan__frame_claims_more_than_the_file__classified_without_allocating() -> None:
    # A CRC-valid header claiming a 256 MiB payload in a 200-byte file: the scanner compares
    # the claim with the bytes that remain before it reads or allocates anything.
    header = _frame_header(1, 0, RECORD_SIZE_LIMIT_BYTES, RECORD_SIZE_LIMIT_BYTES)
    buf = encode_segment_header(1) + header + b"x" * 128
    tracemalloc.start()
    try:
        scan = scan_segment(Path("claims.wal"), buf)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, peak
    assert scan.frames == []
    assert scan.stop is not None
    assert scan.stop.reason == "frame extends past segment end"
    assert (scan.stop.header_ok, scan.stop.length_ok) == (True, False)


# ---- payload decoding --------------------------------------------------------------------------


def _zstd_header(stored: bytes, raw_len: int) -> FrameHeader:
    return FrameHeader(1, 0, len(stored), raw_len, Codec.ZSTD, crc32c(stored))


@pytest.mark.parametrize("raw_len_delta", [-1, +1, -99, +1000])
def test_decode_payload__zstd_size_differs_from_raw_len__refused(raw_len_delta: int) -> None:
    # raw_len is part of the CRC-protected header; the codec output must match it exactly.
    content = b"0123456789" * 10
    stored = zstandard.ZstdCompressor().compress(content)
    with pytest.raises(ValueError):
        decode_payload(_zstd_header(stored, len(content) + raw_len_delta), stored)


@pytest.mark.parametrize("write_content_size", [True, False])
def test_decode_payload__zstd_without_or_with_content_size__decodes(write_content_size: bool) -> None:
    # The content size field is optional in zstd frames; both forms decode.
    content = b"abc" * 500
    stored = zstandard.ZstdCompressor(write_content_size=write_content_size).compress(content)
    assert decode_payload(_zstd_header(stored, len(content)), stored) == content


@pytest.mark.parametrize("stored", [b"", b"garbage", b"\x28\xb5\x2f\xfd" + b"\xff" * 20])
def test_decode_payload__zstd_garbage__value_error(stored: bytes) -> None:
    # Not a zstd frame, or a damaged one: ValueError, which readers turn into corruption.
    with pytest.raises(ValueError):
        decode_payload(_zstd_header(stored, 100), stored)


def test_decode_payload__zstd_two_frames__decodes_to_more_than_raw_len__refused() -> None:
    # A payload of two zstd frames decodes to 2 * raw_len bytes: that is not "exactly raw_len".
    one = zstandard.ZstdCompressor().compress(b"x" * 100)
    with pytest.raises(ValueError):
        decode_payload(_zstd_header(one + one, 100), one + one)
    with pytest.raises(ValueError):
        decode_payload(_zstd_header(one + b"junk", 100), one + b"junk")


def test_decode_payload__zstd_bomb__never_allocates_beyond_raw_len() -> None:
    # The zstd frame header claims 64 MiB; raw_len says 100: refuse before allocating 64 MiB.
    stored = _zstd_frame_claiming(b"a" * 100, 64 * 1024 * 1024)
    assert zstandard.frame_content_size(stored) == 64 * 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(ValueError):
            decode_payload(_zstd_header(stored, 100), stored)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, f"decoding a 100-byte record allocated {peak} bytes"


@pytest.mark.parametrize("claimed", [2**40, 2**62, 2**64 - 2], ids=["1TiB", "4EiB", "u64_max"])
def test_decode_payload__zstd_bomb_impossible_size__value_error_not_memory_error(claimed: int) -> None:
    # Readers turn ValueError into WalCorruptionError; a MemoryError would escape them.
    stored = _zstd_frame_claiming(b"a" * 100, claimed)
    with pytest.raises(ValueError):
        decode_payload(_zstd_header(stored, 100), stored)


# ---- golden segment ----------------------------------------------------------------------------

GOLDEN_PAYLOADS = (
    b"hello, sluice",
    b"",
    b"compressible " * 40,  # 520 bytes: stored as zstd
    bytes(range(256)),
)


def golden_segment_bytes() -> bytes:
    """The golden segment, built with ``wal.format`` alone: base LSN 1, four frames (record 3
    zstd-compressed), each frame recording the previous LSN as durable, zeros to 4096 bytes."""
    compressor = zstandard.ZstdCompressor(level=GOLDEN_ZSTD_LEVEL)
    buf = bytearray(encode_segment_header(1))
    for lsn, payload in enumerate(GOLDEN_PAYLOADS, start=1):
        buf += encode_frame(lsn, lsn - 1, payload, compressor=compressor, compress_min_bytes=512)
    assert len(buf) <= GOLDEN_SIZE_BYTES
    return bytes(buf) + bytes(GOLDEN_SIZE_BYTES - len(buf))


def _first_difference(expected: bytes, actual: bytes) -> str:
    if len(expected) != len(actual):
        return f"size {len(actual)} != golden {len(expected)}"
    index = next(i for i, (a, b) in enumerate(zip(expected, actual, strict=True)) if a != b)
    return f"first differing byte at offset {index}"


def test_golden__v1_small__generator_reproduces_the_file_byte_for_byte() -> None:
    # Format drift guard: today's encoder must write exactly the committed v1 bytes.
    # If only record 3's stored payload differs, the zstd library changed its output, not
    # our format: check that, then regenerate with SLUICE_REGEN_GOLDEN=1.
    generated = golden_segment_bytes()
    if os.environ.get(REGEN_ENV) == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_bytes(generated)
    assert GOLDEN.exists(), f"missing {GOLDEN}; create it with {REGEN_ENV}=1"
    golden = GOLDEN.read_bytes()
    assert generated == golden, _first_difference(golden, generated)


def test_golden__v1_small__fields_are_where_the_spec_says() -> None:
    # Independent of the encoder: parse the committed bytes with the documented layout.
    golden = GOLDEN.read_bytes()
    assert len(golden) == GOLDEN_SIZE_BYTES
    assert golden[:8] == b"SLUICEWL"
    assert golden[8] == 1
    offset, codecs = SEGMENT_HEADER_SIZE, []
    for lsn in range(1, len(GOLDEN_PAYLOADS) + 1):
        magic, _, f_lsn, durable, stored_len, raw_len, codec, _, _ = FRAME_HEADER.unpack_from(
            golden, offset)
        assert (magic, f_lsn, durable) == (b"SLFR", lsn, lsn - 1)
        assert raw_len == len(GOLDEN_PAYLOADS[lsn - 1])
        codecs.append(codec)
        offset += FRAME_HEADER_SIZE + stored_len
    assert codecs == [0, 0, 1, 0]
    assert golden[offset:] == bytes(GOLDEN_SIZE_BYTES - offset)


async def test_golden__v1_small__opens_and_reads_back_from_a_copy(tmp_path: Path) -> None:
    # open_wal recovers a copy of the golden file (never the fixture itself) and serves it.
    before = GOLDEN.read_bytes()
    shutil.copyfile(GOLDEN, tmp_path / segment_name(1))
    async with open_wal(tmp_path, SMALL_CONFIG) as wal:
        frames = list(wal.read_from(1))
        assert wal.recovery_report.torn_tail is None
        assert await wal.append(b"after the golden records") == len(GOLDEN_PAYLOADS) + 1
    assert [f.payload for f in frames] == list(GOLDEN_PAYLOADS)
    assert [f.lsn for f in frames] == [1, 2, 3, 4]
    assert [f.compressed for f in frames] == [False, False, True, False]
    assert GOLDEN.read_bytes() == before
