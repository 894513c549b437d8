"""Sluice WAL on-disk format, version 1. Pure functions: no I/O, no event loop.

Directory and segment naming
----------------------------
The log is a directory of segment files named ``<base_lsn>.wal`` where ``base_lsn`` is the
LSN of the segment's first frame written as 20 zero-padded decimal digits
(``00000000000000000001.wal``), so lexical order is log order. LSNs start at 1 and increase
by exactly 1 per record with no gaps, across segments. A segment is created as
``<name>.tmp`` (zero-filled to its full size, header written, fsynced), then renamed to its
final name and the directory fsynced; a ``.tmp`` file is therefore an unfinished roll and is
deleted on open. ``<name>.broken-<offset>`` files hold bytes that recovery cut off a torn tail.

Segment file (fixed size ``segment_size_max_bytes``, preallocated with zeros)
-----------------------------------------------------------------------------
    offset  size  field
    0       8     magic          b"SLUICEWL"
    8       1     version        1 (this document). Any other value refuses to open.
    9       7     reserved       zero
    16      8     base_lsn       u64 little-endian, LSN of the first frame in this segment
    24      4     reserved       zero
    28      4     header_crc     CRC32C of bytes 0..28
    32      ...   frames, back to back, then zeros up to the end of the file

Frame (all integers little-endian)
----------------------------------
    offset  size  field
    0       4     magic          b"SLFR" (lets recovery find frames after damage with a
                                 byte search instead of a CRC at every offset)
    4       4     header_crc     CRC32C of frame bytes 4+4 .. 40 (every field below)
    8       8     lsn            u64, the record's log sequence number
    16      8     durable_lsn    u64, the highest LSN known durable (fsynced) when this
                                 frame was written; 0 = none. Recovery uses it to tell a torn
                                 unsynced tail from damage to data that was already durable.
    24      4     stored_len     u32, payload bytes that follow the header on disk
    28      4     raw_len        u32, payload length after decoding
    32      1     codec          0 = raw (stored_len == raw_len), 1 = zstd frame
    33      3     reserved       zero
    36      4     payload_crc    CRC32C of the stored payload bytes
    40      ...   payload        stored_len bytes

CRC32C is the Castagnoli polynomial (``crc32c`` package; check value of b"123456789" is
0xE3069283). The header CRC covers ``payload_crc``, so one chain protects header and payload.

A frame at offset ``o`` of a segment is valid when all of these hold:
  1. magic matches and ``header_crc`` matches bytes 8..40;
  2. ``lsn`` equals the expected next LSN (``base_lsn`` for the first frame, previous + 1
     after); ``durable_lsn < lsn``; codec is known; reserved bytes are zero;
  3. ``raw_len`` and ``stored_len`` are at most the record limit, and ``o + 40 + stored_len``
     fits inside the file (checked before any payload is read or allocated);
  4. ``payload_crc`` matches the stored payload;
  5. for zstd, the payload decompresses to exactly ``raw_len`` bytes (checked on decode).
The first position that is not a valid frame ends the segment's data; what that means (clean
end, torn tail, corruption) is decided by ``wal.recovery``'s decision table.

What invalidates old frames: nothing is ever overwritten in place except a torn tail, which
recovery zero-fills after copying it aside. Segments are never recycled, and the strict LSN
sequence check rejects any stale frame that could appear from elsewhere.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

import crc32c as _crc32c
import zstandard

FORMAT_VERSION = 1

SEGMENT_MAGIC = b"SLUICEWL"
SEGMENT_HEADER = struct.Struct("<8sB7sQ4sI")
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size  # 32
assert SEGMENT_HEADER_SIZE == 32

FRAME_MAGIC = b"SLFR"
FRAME_HEADER = struct.Struct("<4sIQQIIB3sI")
FRAME_HEADER_SIZE = FRAME_HEADER.size  # 40
assert FRAME_HEADER_SIZE == 40
_FRAME_CRC_START = 8  # header_crc covers bytes 8..40
FRAME_CODEC_OFFSET = 32

# Absolute ceiling on one record, independent of configuration: a length field above it is
# damage, never a real record (u32 fields could claim 4 GiB). Configured limits must be lower.
RECORD_SIZE_LIMIT_BYTES = 256 * 1024 * 1024

SEGMENT_SUFFIX = ".wal"
TEMP_SUFFIX = ".tmp"
BROKEN_SUFFIX = ".broken-"
_LSN_DIGITS = 20

_ZERO3 = b"\x00" * 3
_ZERO4 = b"\x00" * 4
_ZERO7 = b"\x00" * 7


class Codec(IntEnum):
    RAW = 0
    ZSTD = 1


def crc32c(data: bytes | memoryview, value: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, continuing from ``value``."""
    return _crc32c.crc32c(data, value)


def segment_name(base_lsn: int) -> str:
    """File name of the segment whose first frame has ``base_lsn``."""
    assert 0 < base_lsn < 10**_LSN_DIGITS
    return f"{base_lsn:0{_LSN_DIGITS}d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """The base LSN encoded in a segment file name, or None if ``name`` is not a segment."""
    stem, dot, ext = name.partition(".")
    if dot + ext != SEGMENT_SUFFIX or len(stem) != _LSN_DIGITS or not (stem.isascii() and stem.isdigit()):
        return None
    base = int(stem)
    return base if base > 0 else None


def encode_segment_header(base_lsn: int) -> bytes:
    assert base_lsn > 0
    body = SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, _ZERO7, base_lsn, _ZERO4, 0)
    crc = crc32c(body[: SEGMENT_HEADER_SIZE - 4])
    return body[: SEGMENT_HEADER_SIZE - 4] + struct.pack("<I", crc)


def decode_segment_header(buf: bytes | memoryview) -> int | str:
    """The base LSN of a segment header, or a reason string when the header is invalid."""
    if len(buf) < SEGMENT_HEADER_SIZE:
        return f"segment header truncated ({len(buf)} of {SEGMENT_HEADER_SIZE} bytes)"
    magic, version, reserved7, base_lsn, reserved4, crc = SEGMENT_HEADER.unpack_from(buf, 0)
    if magic != SEGMENT_MAGIC:
        return "bad segment magic"
    if crc != crc32c(bytes(buf[: SEGMENT_HEADER_SIZE - 4])):
        return "segment header CRC mismatch"
    if version != FORMAT_VERSION:
        return f"unsupported segment format version {version}"
    if reserved7 != _ZERO7 or reserved4 != _ZERO4:
        return "segment header reserved bytes not zero"
    if base_lsn == 0:
        return "segment base LSN is 0"
    return base_lsn


@dataclass(frozen=True, slots=True)
class FrameHeader:
    lsn: int
    durable_lsn: int
    stored_len: int
    raw_len: int
    codec: Codec
    payload_crc: int

    @property
    def frame_size(self) -> int:
        return FRAME_HEADER_SIZE + self.stored_len


def encode_frame(
    lsn: int,
    durable_lsn: int,
    payload: bytes,
    *,
    compressor: zstandard.ZstdCompressor | None = None,
    compress_min_bytes: int = 0,
) -> bytes:
    """One frame (header + stored payload).

    The payload is zstd-compressed when a ``compressor`` is given, the payload is at least
    ``compress_min_bytes`` long and compression makes it smaller. The caller checks the
    record size limit before calling.
    """
    assert lsn > 0
    assert 0 <= durable_lsn < lsn
    raw_len = len(payload)
    assert raw_len <= RECORD_SIZE_LIMIT_BYTES
    stored, codec = payload, Codec.RAW
    if compressor is not None and raw_len >= compress_min_bytes:
        packed = compressor.compress(payload)
        if len(packed) < raw_len:
            stored, codec = packed, Codec.ZSTD
    payload_crc = crc32c(stored)
    fields = struct.pack("<QQIIB3sI", lsn, durable_lsn, len(stored), raw_len, codec, _ZERO3, payload_crc)
    return FRAME_MAGIC + struct.pack("<I", crc32c(fields)) + fields + stored


def decode_frame_header(
    buf: bytes | memoryview, offset: int, *, record_size_max_bytes: int = RECORD_SIZE_LIMIT_BYTES
) -> FrameHeader | str:
    """Checks rule 1-3 of the frame-validity rule except the LSN sequence and the file bound.

    Returns the header, or a reason string. Never reads past ``offset + FRAME_HEADER_SIZE``.
    """
    if offset + FRAME_HEADER_SIZE > len(buf):
        return "frame header truncated"
    magic, header_crc, lsn, durable_lsn, stored_len, raw_len, codec, reserved, payload_crc = (
        FRAME_HEADER.unpack_from(buf, offset)
    )
    if magic != FRAME_MAGIC:
        return "bad frame magic"
    if header_crc != crc32c(bytes(buf[offset + _FRAME_CRC_START : offset + FRAME_HEADER_SIZE])):
        return "frame header CRC mismatch"
    if lsn == 0 or durable_lsn >= lsn:
        return f"impossible LSN fields (lsn={lsn}, durable_lsn={durable_lsn})"
    if codec not in (Codec.RAW, Codec.ZSTD) or reserved != _ZERO3:
        return f"unknown codec {codec} or reserved bytes not zero"
    if raw_len > record_size_max_bytes or stored_len > record_size_max_bytes:
        return f"record length {max(raw_len, stored_len)} exceeds limit {record_size_max_bytes}"
    if codec == Codec.RAW and stored_len != raw_len:
        return "raw frame with stored_len != raw_len"
    return FrameHeader(lsn, durable_lsn, stored_len, raw_len, Codec(codec), payload_crc)


def payload_ok(header: FrameHeader, stored: bytes | memoryview) -> bool:
    assert len(stored) == header.stored_len
    return crc32c(stored) == header.payload_crc


def decode_payload(header: FrameHeader, stored: bytes | memoryview) -> bytes:
    """The record bytes of a frame whose payload CRC already matched.

    Raises ``ValueError`` if a zstd payload does not decode to exactly ``raw_len`` bytes;
    the output is never allowed to grow beyond ``raw_len`` (no decompression bombs).
    """
    if header.codec == Codec.RAW:
        return bytes(stored)
    stored = bytes(stored)
    try:
        # python-zstandard sizes its output from the frame's own content-size field and
        # ignores max_output_size then: check that claim before anything is allocated.
        declared = zstandard.frame_content_size(stored)
        if declared not in (-1, header.raw_len):
            raise ValueError(f"zstd frame declares {declared} bytes, header says {header.raw_len}")
        raw = zstandard.ZstdDecompressor().decompress(
            stored, max_output_size=header.raw_len, allow_extra_data=False
        )
    except zstandard.ZstdError as exc:
        raise ValueError(f"zstd payload does not decode: {exc}") from exc
    if len(raw) != header.raw_len:
        raise ValueError(f"zstd payload decoded to {len(raw)} bytes, header says {header.raw_len}")
    return raw
