"""Time-ordered id generators: Snowflake numbers, UUIDv7 and ULID (PROTOCOL.md §3.6).

Every generator takes an injected clock, ``now_ms: Callable[[], int]`` returning Unix
milliseconds, and (UUIDv7/ULID) a source of randomness, ``rand: Callable[[int], bytes]``
(``os.urandom`` in production). Nothing here reads the wall clock, so tests pass fakes.

Snowflake layout (a non-negative int64)::

    bit 63      62 .. 22                      21 .. 12          11 .. 0
    0 | milliseconds since epoch (41 bits) | node id (10 bits) | sequence (12 bits)

``_seq`` uses ``SEQ_EPOCH_MS`` (2024-01-01), so a row version was written at
``(_seq >> 22) + SEQ_EPOCH_MS``; the SQL function SNOWFLAKE_ID() uses ``UNIX_EPOCH_MS``.
"""

from __future__ import annotations

from collections.abc import Callable

SEQ_EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z, the epoch of `_seq` values
UNIX_EPOCH_MS = 0  # the epoch of SNOWFLAKE_ID()
TIMESTAMP_BITS = 41
NODE_BITS = 10
SEQUENCE_BITS = 12
TIMESTAMP_MAX = (1 << TIMESTAMP_BITS) - 1  # ms since the epoch: about 69.7 years
NODE_ID_MAX = (1 << NODE_BITS) - 1
SEQUENCE_MAX = (1 << SEQUENCE_BITS) - 1  # ids per millisecond before borrowing the next one
_TIMESTAMP_SHIFT = NODE_BITS + SEQUENCE_BITS
UNIX_MS_48_BIT_MAX = (1 << 48) - 1  # UUIDv7 and ULID carry a 48-bit Unix-millisecond field
RANDOM_BYTES = 10  # the random part of a UUIDv7 (74 of 80 bits used) and of a ULID (80 bits)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class Snowflake:
    """A strictly increasing Snowflake id source for one node.

    ``next()`` returns an id greater than every id this instance returned before, whatever the
    clock does: when the clock stands still or goes backwards the sequence is bumped within the
    last millisecond used, and when the 4096 sequence numbers of that millisecond are spent the
    generator borrows the next millisecond (the embedded time then runs ahead of the clock
    until the clock catches up). ``advance_past`` does the same across restarts.

    Not thread-safe: use it from one trio task or guard it. Raises ``ValueError`` when the
    clock reads before ``epoch_ms`` or beyond the 41-bit range (about 69 years after it).
    """

    __slots__ = ("_epoch_ms", "_last_ms", "_node_id", "_now_ms", "_sequence")

    def __init__(self, epoch_ms: int, node_id: int, now_ms: Callable[[], int]) -> None:
        if not 0 <= node_id <= NODE_ID_MAX:
            raise ValueError(f"node_id must be in 0..{NODE_ID_MAX}, got {node_id}")
        if epoch_ms < 0:
            raise ValueError(f"epoch_ms must be >= 0, got {epoch_ms}")
        self._epoch_ms = epoch_ms
        self._node_id = node_id
        self._now_ms = now_ms
        self._last_ms = -1  # ms since epoch of the last id; -1: none yet
        self._sequence = SEQUENCE_MAX

    def next(self) -> int:
        """The next id (see the class docstring for the ordering guarantee)."""
        elapsed_ms = self._now_ms() - self._epoch_ms
        if not 0 <= elapsed_ms <= TIMESTAMP_MAX:
            raise ValueError(f"clock reads {elapsed_ms} ms from the Snowflake epoch "
                             f"{self._epoch_ms}, outside 0..{TIMESTAMP_MAX}")
        if elapsed_ms > self._last_ms:
            self._last_ms, self._sequence = elapsed_ms, 0
        elif self._sequence < SEQUENCE_MAX:
            self._sequence += 1
        else:
            self._last_ms, self._sequence = self._last_ms + 1, 0  # borrow the next millisecond
            if self._last_ms > TIMESTAMP_MAX:
                raise ValueError("Snowflake timestamp range exhausted")
        value = ((self._last_ms << _TIMESTAMP_SHIFT) | (self._node_id << SEQUENCE_BITS)
                 | self._sequence)
        assert 0 <= value < 1 << 63
        return value

    def next_many(self, count: int) -> list[int]:
        """``count`` ids, exactly what ``count`` calls of ``next()`` would return if the clock
        stood still meanwhile (one clock read: consecutive sequence numbers, borrowing the
        following milliseconds when a millisecond's 4096 are spent)."""
        if count <= 0:
            return []
        first = self.next()
        counter = (self._last_ms << SEQUENCE_BITS) | self._sequence  # ms and sequence as one
        end = counter + count - 1
        if end >> SEQUENCE_BITS > TIMESTAMP_MAX:
            raise ValueError("Snowflake timestamp range exhausted")
        node = self._node_id << SEQUENCE_BITS
        mask = SEQUENCE_MAX
        ids = [first]
        ids += [((c >> SEQUENCE_BITS) << _TIMESTAMP_SHIFT) | node | (c & mask)
                for c in range(counter + 1, end + 1)]
        self._last_ms, self._sequence = end >> SEQUENCE_BITS, end & mask
        return ids

    def advance_past(self, value: int) -> None:
        """Make every later ``next()`` return an id greater than ``value`` (e.g. the largest
        ``_seq`` found on replay, in case the clock is now behind it). A no-op when the
        generator is already past ``value``."""
        if value < 0:
            raise ValueError(f"a Snowflake id is non-negative, got {value}")
        ms = value >> _TIMESTAMP_SHIFT
        node, sequence = (value >> SEQUENCE_BITS) & NODE_ID_MAX, value & SEQUENCE_MAX
        if node > self._node_id:
            sequence = SEQUENCE_MAX  # our ids in `ms` are all smaller: move to the next ms
        elif node < self._node_id:
            sequence = -1  # our sequence 0 in `ms` is already greater
        if (ms, sequence) > (self._last_ms, self._sequence):
            self._last_ms, self._sequence = ms, sequence


def snowflake_fields(value: int, epoch_ms: int) -> tuple[int, int, int]:
    """Decode a Snowflake id into (Unix milliseconds, node id, sequence)."""
    if value < 0:
        raise ValueError(f"a Snowflake id is non-negative, got {value}")
    return ((value >> _TIMESTAMP_SHIFT) + epoch_ms, (value >> SEQUENCE_BITS) & NODE_ID_MAX,
            value & SEQUENCE_MAX)


def seq_to_unix_ms(seq: int) -> int:
    """The Unix-millisecond creation time embedded in a ``_seq`` value."""
    return snowflake_fields(seq, SEQ_EPOCH_MS)[0]


def seq_floor_for_unix_ms(unix_ms: int) -> int:
    """The smallest ``_seq`` a row version written at ``unix_ms`` or later can have, so that
    ``_seq < seq_floor_for_unix_ms(cutoff)`` selects versions written before ``cutoff``."""
    return max(0, unix_ms - SEQ_EPOCH_MS) << _TIMESTAMP_SHIFT


def _unix_ms_48(now_ms: Callable[[], int]) -> int:
    unix_ms = now_ms()
    if not 0 <= unix_ms <= UNIX_MS_48_BIT_MAX:
        raise ValueError(f"clock reads {unix_ms} ms, outside the 48-bit range")
    return unix_ms


def _random(rand: Callable[[int], bytes]) -> bytes:
    data = rand(RANDOM_BYTES)
    assert isinstance(data, bytes), type(data)
    assert len(data) == RANDOM_BYTES, len(data)
    return data


def uuid_v7(now_ms: Callable[[], int], rand: Callable[[int], bytes]) -> str:
    """A UUID version 7 (RFC 9562 §5.7) in canonical lowercase form.

    Layout: 48-bit big-endian Unix ms | version 0b0111 | 12 random bits (rand_a) | variant
    0b10 | 62 random bits (rand_b). The random bits are the low bits of ``rand(10)``: byte 0's
    low nibble and byte 1 are rand_a, byte 2's low 6 bits and bytes 3..9 are rand_b. Values are
    ordered by millisecond; within one millisecond the order is random (no counter).
    """
    unix_ms, r = _unix_ms_48(now_ms), _random(rand)
    raw = (unix_ms.to_bytes(6, "big") + bytes((0x70 | (r[0] & 0x0F), r[1], 0x80 | (r[2] & 0x3F)))
           + r[3:])
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def ulid(now_ms: Callable[[], int], rand: Callable[[int], bytes]) -> str:
    """A ULID: 48-bit Unix ms then 80 random bits (``rand(10)``, big-endian), as 26 Crockford
    base32 characters (the first is at most '7'). Ordered by millisecond; random within one."""
    value = (_unix_ms_48(now_ms) << 80) | int.from_bytes(_random(rand), "big")
    return "".join(_CROCKFORD[(value >> shift) & 0x1F] for shift in range(125, -1, -5))
