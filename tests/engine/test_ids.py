"""Id generators (PROTOCOL.md §3.6): Snowflake layout and ordering under a fake clock, UUIDv7
and ULID known answers, format and ordering."""

from __future__ import annotations

import random
import re
import uuid

import pytest

from engine.ids import (
    NODE_ID_MAX,
    SEQ_EPOCH_MS,
    SEQUENCE_MAX,
    UNIX_EPOCH_MS,
    Snowflake,
    seq_floor_for_unix_ms,
    seq_to_unix_ms,
    snowflake_fields,
    ulid,
    uuid_v7,
)


class FakeClock:
    """Unix milliseconds that move only when the test says so."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def fixed_bytes(data: bytes):
    def rand(n: int) -> bytes:
        assert n == len(data)
        return data
    return rand


# ---------------------------------------------------------------------------------------------
# Snowflake


def test_snowflake__layout__time_node_sequence_bits() -> None:
    # 5 ms after the epoch, node 3, first id of that millisecond.
    clock = FakeClock(SEQ_EPOCH_MS + 5)
    value = Snowflake(SEQ_EPOCH_MS, 3, clock).next()
    assert value == (5 << 22) | (3 << 12) | 0
    assert snowflake_fields(value, SEQ_EPOCH_MS) == (SEQ_EPOCH_MS + 5, 3, 0)
    assert seq_to_unix_ms(value) == SEQ_EPOCH_MS + 5


def test_snowflake__seq_epoch__is_2024_01_01_utc() -> None:
    assert SEQ_EPOCH_MS == 1_704_067_200_000
    assert UNIX_EPOCH_MS == 0


def test_snowflake__unix_epoch__embeds_unix_milliseconds() -> None:
    # SNOWFLAKE_ID() uses the Unix epoch, so the top bits are the wall time itself.
    value = Snowflake(UNIX_EPOCH_MS, NODE_ID_MAX, FakeClock(1_767_139_200_123)).next()
    assert value >> 22 == 1_767_139_200_123
    assert snowflake_fields(value, UNIX_EPOCH_MS) == (1_767_139_200_123, NODE_ID_MAX, 0)
    assert value < 2**63


def test_snowflake__same_millisecond__sequence_counts_up() -> None:
    clock = FakeClock(SEQ_EPOCH_MS + 10)
    gen = Snowflake(SEQ_EPOCH_MS, 0, clock)
    assert [gen.next() & 0xFFF for _ in range(4)] == [0, 1, 2, 3]
    clock.ms += 1
    value = gen.next()
    assert (value >> 22, value & 0xFFF) == (11, 0)


def test_snowflake__sequence_overflow__borrows_next_millisecond() -> None:
    # 4097 ids in one frozen millisecond: the last one moves to the next millisecond.
    clock = FakeClock(SEQ_EPOCH_MS + 100)
    gen = Snowflake(SEQ_EPOCH_MS, 1, clock)
    values = [gen.next() for _ in range(SEQUENCE_MAX + 2)]
    assert values == sorted(set(values))
    assert snowflake_fields(values[-2], SEQ_EPOCH_MS) == (SEQ_EPOCH_MS + 100, 1, SEQUENCE_MAX)
    assert snowflake_fields(values[-1], SEQ_EPOCH_MS) == (SEQ_EPOCH_MS + 101, 1, 0)
    clock.ms += 1  # the clock reaches the borrowed millisecond: keep counting in it
    assert snowflake_fields(gen.next(), SEQ_EPOCH_MS) == (SEQ_EPOCH_MS + 101, 1, 1)


@pytest.mark.parametrize("count", [1, 100, SEQUENCE_MAX + 2, 3 * SEQUENCE_MAX])
def test_snowflake__next_many__same_ids_as_repeated_next_across_borrowed_milliseconds(
        count: int) -> None:
    # From the middle of a millisecond, next_many(count) and count next() calls agree, and
    # so does the id after them.
    clock = FakeClock(SEQ_EPOCH_MS + 100)
    bulk, single = Snowflake(SEQ_EPOCH_MS, 5, clock), Snowflake(SEQ_EPOCH_MS, 5, clock)
    for _ in range(4000):
        bulk.next(), single.next()
    assert bulk.next_many(count) == [single.next() for _ in range(count)]
    assert bulk.next_many(0) == []
    assert bulk.next() == single.next()


def test_snowflake__clock_goes_backwards__still_strictly_increasing() -> None:
    clock = FakeClock(SEQ_EPOCH_MS + 1_000)
    gen = Snowflake(SEQ_EPOCH_MS, 0, clock)
    first = gen.next()
    clock.ms -= 500
    second = gen.next()
    assert second > first
    assert snowflake_fields(second, SEQ_EPOCH_MS)[0] == SEQ_EPOCH_MS + 1_000  # stays put
    clock.ms += 600
    assert gen.next() >> 22 == 1_100


def test_snowflake__random_walk_clock__strictly_increasing(base_seed: int) -> None:
    # A clock that jumps back and forth at random; ids must never repeat or go down.
    rng = random.Random(base_seed)
    clock = FakeClock(SEQ_EPOCH_MS + 10_000)
    gen = Snowflake(SEQ_EPOCH_MS, 7, clock)
    last = -1
    for _ in range(20_000):
        clock.ms += rng.choice((-3, 0, 0, 0, 1))
        value = gen.next()
        assert value > last, f"seed {base_seed}"
        last = value


def test_snowflake__advance_past_later_value__next_is_greater() -> None:
    # After a restart the clock may be behind the largest _seq found on replay.
    clock = FakeClock(SEQ_EPOCH_MS + 50)
    for node in (0, 5, NODE_ID_MAX):
        replayed = (900 << 22) | (5 << 12) | 17
        gen = Snowflake(SEQ_EPOCH_MS, node, clock)
        gen.advance_past(replayed)
        assert gen.next() > replayed
        gen.advance_past(0)  # older values change nothing
        assert gen.next() >> 22 in (900, 901)


def test_snowflake__advance_past_top_sequence__borrows_next_millisecond() -> None:
    gen = Snowflake(SEQ_EPOCH_MS, 0, FakeClock(SEQ_EPOCH_MS))
    gen.advance_past((7 << 22) | SEQUENCE_MAX)
    assert snowflake_fields(gen.next(), SEQ_EPOCH_MS)[0] == SEQ_EPOCH_MS + 8


@pytest.mark.parametrize(("epoch_ms", "node_id"), [(0, -1), (0, NODE_ID_MAX + 1), (-1, 0)])
def test_snowflake__bad_arguments__value_error(epoch_ms: int, node_id: int) -> None:
    with pytest.raises(ValueError):
        Snowflake(epoch_ms, node_id, FakeClock(SEQ_EPOCH_MS))


@pytest.mark.parametrize("now_ms", [SEQ_EPOCH_MS - 1, SEQ_EPOCH_MS + 2**41])
def test_snowflake__clock_outside_41_bit_range__value_error(now_ms: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        Snowflake(SEQ_EPOCH_MS, 0, FakeClock(now_ms)).next()


def test_seq_floor_for_unix_ms__cutoff__splits_older_from_newer_versions() -> None:
    gen = Snowflake(SEQ_EPOCH_MS, NODE_ID_MAX, clock := FakeClock(SEQ_EPOCH_MS + 999))
    older = [gen.next() for _ in range(3)]
    clock.ms += 1
    newer = gen.next()
    floor = seq_floor_for_unix_ms(SEQ_EPOCH_MS + 1_000)
    assert all(v < floor for v in older)
    assert newer >= floor
    assert seq_floor_for_unix_ms(0) == 0


# ---------------------------------------------------------------------------------------------
# UUIDv7 and ULID

UUID_V7_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
ULID_RE = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")


def test_uuid_v7__rfc9562_example__known_answer() -> None:
    # RFC 9562 Appendix A.6: unix_ts_ms 0x017F22E279B0, rand_a 0xCC3, rand_b 0x18C4DC0C0C07398F.
    rand = fixed_bytes(bytes.fromhex("0cc318c4dc0c0c07398f"))
    assert uuid_v7(FakeClock(0x017F22E279B0), rand) == "017f22e2-79b0-7cc3-98c4-dc0c0c07398f"


def test_uuid_v7__random_bits_set_high__version_and_variant_still_forced() -> None:
    value = uuid_v7(FakeClock(0), fixed_bytes(b"\xff" * 10))
    assert value == "00000000-0000-7fff-bfff-ffffffffffff"
    parsed = uuid.UUID(value)
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)


def test_uuid_v7__many_values__canonical_form_and_time_prefix(base_seed: int) -> None:
    rng = random.Random(base_seed)
    clock = FakeClock(1_767_139_200_123)
    for _ in range(200):
        value = uuid_v7(clock, rng.randbytes)
        assert UUID_V7_RE.fullmatch(value), f"seed {base_seed}: {value}"
        assert int(value.replace("-", "")[:12], 16) == clock.ms


def test_uuid_v7__later_millisecond__sorts_after(base_seed: int) -> None:
    rng = random.Random(base_seed)
    clock = FakeClock(1_700_000_000_000)
    values = []
    for _ in range(100):
        values.append(uuid_v7(clock, rng.randbytes))
        clock.ms += 1
    assert values == sorted(values), f"seed {base_seed}"


def test_ulid__known_answers() -> None:
    # The ULID spec's timestamp example: 1469918176385 ms encodes as "01ARYZ6S41".
    assert ulid(FakeClock(1_469_918_176_385), fixed_bytes(bytes(10))) == "01ARYZ6S41" + "0" * 16
    assert ulid(FakeClock(0), fixed_bytes(bytes(10))) == "0" * 26
    assert ulid(FakeClock(2**48 - 1), fixed_bytes(b"\xff" * 10)) == "7" + "Z" * 25
    assert ulid(FakeClock(0), fixed_bytes(bytes(9) + b"\x21")) == "0" * 24 + "11"


def test_ulid__many_values__crockford_base32_and_ordered_by_time(base_seed: int) -> None:
    rng = random.Random(base_seed)
    clock = FakeClock(1_700_000_000_000)
    values = []
    for _ in range(100):
        values.append(ulid(clock, rng.randbytes))
        clock.ms += rng.randint(1, 1000)
    assert all(ULID_RE.fullmatch(v) for v in values), f"seed {base_seed}"
    assert values == sorted(values), f"seed {base_seed}"


@pytest.mark.parametrize("generate", [uuid_v7, ulid])
@pytest.mark.parametrize("now_ms", [-1, 2**48])
def test_time_ordered_ids__clock_outside_48_bits__value_error(generate, now_ms: int) -> None:
    with pytest.raises(ValueError, match="48-bit"):
        generate(FakeClock(now_ms), fixed_bytes(bytes(10)))
