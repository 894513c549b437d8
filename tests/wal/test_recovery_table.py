"""The recovery decision table (``wal.recovery.DECISION_TABLE``), walked exhaustively.

Six boolean facts describe where a segment's valid frames stop; every one of the 64
combinations must select exactly one row, every row must be selected by some combination,
and the table's safety promises (never truncate a sealed segment or vouched-for data) must
hold for every combination. That the real scanner never produces an IMPOSSIBLE combination
is checked here on a few hand-made segments and, exhaustively, by the corruption tests.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from wal.format import encode_frame, encode_segment_header
from wal.recovery import DECISION_TABLE, Outcome, Row, all_fact_combinations, decide
from wal.scan import scan_segment

FACTS = ("header_ok", "length_ok", "payload_ok", "rest_zero", "last_segment", "vouched")
COMBINATIONS = list(itertools.product((False, True), repeat=len(FACTS)))


def _named(facts: tuple[bool, ...]) -> dict[str, bool]:
    return dict(zip(FACTS, facts, strict=True))


def test_recovery_table__every_fact_combination__matches_exactly_one_row() -> None:
    # 2**6 combinations; decide() asserts uniqueness itself, so check both ways.
    assert len(COMBINATIONS) == 64
    assert sorted(all_fact_combinations()) == sorted(COMBINATIONS)
    for facts in COMBINATIONS:
        rows = [row for row in DECISION_TABLE if row.matches(facts)]
        assert len(rows) == 1, (_named(facts), rows)
        assert decide(facts) is rows[0]


def test_recovery_table__every_row__is_reachable() -> None:
    # A row that no combination selects is dead text that hides a mistake in the columns.
    reached = {id(decide(facts)) for facts in COMBINATIONS}
    unreachable = [row.note for row in DECISION_TABLE if id(row) not in reached]
    assert not unreachable


def test_recovery_table__every_row__has_a_note_and_a_known_outcome() -> None:
    # Rows are data with prose: each says why, and no two reachable outcomes share a note.
    for row in DECISION_TABLE:
        assert isinstance(row.outcome, Outcome)
        assert row.note.strip() and len(row.note) >= 20, row
    assert len({row.note for row in DECISION_TABLE if row.outcome != Outcome.IMPOSSIBLE}) == len(
        [row for row in DECISION_TABLE if row.outcome != Outcome.IMPOSSIBLE])


def test_recovery_table__every_outcome__is_used() -> None:
    # OK, END, TRUNCATE_TAIL, FAIL_CORRUPT and IMPOSSIBLE each decide some combination.
    assert {decide(facts).outcome for facts in COMBINATIONS} == set(Outcome)


@pytest.mark.parametrize("facts", COMBINATIONS, ids=lambda f: "".join("TF"[not v] for v in f))
def test_recovery_table__safety__per_combination(facts: tuple[bool, ...]) -> None:
    # The promises the table makes, checked per combination instead of per row.
    named, outcome = _named(facts), decide(facts).outcome
    if outcome == Outcome.TRUNCATE_TAIL:
        assert named["last_segment"], "a sealed segment is never truncated"
        assert not named["vouched"], "data a later frame vouches for is never truncated"
        assert not named["rest_zero"], "nothing to cut when the rest is zeros"
    if outcome == Outcome.END:
        assert named["rest_zero"], "a clean end is only zeros"
    if outcome == Outcome.OK:
        assert named["header_ok"] and named["length_ok"] and named["payload_ok"]
    if named["header_ok"] and named["length_ok"] and named["payload_ok"]:
        assert outcome == Outcome.OK
    if not named["header_ok"] and named["length_ok"]:
        assert outcome == Outcome.IMPOSSIBLE, "the scanner checks the length after the header"


def test_recovery_table__rows__are_distinct_data() -> None:
    # The table is data: frozen rows of tuples, no two rows with the same columns.
    columns = [(r.header_ok, r.length_ok, r.payload_ok, r.rest_zero, r.last_segment, r.vouched)
               for r in DECISION_TABLE]
    assert len(set(columns)) == len(columns)
    assert all(isinstance(row, Row) for row in DECISION_TABLE)
    for column in columns:
        assert all(value in ((False,), (True,), (False, True)) for value in column)


# ---- the real scanner feeds the table only possible combinations -------------------------------


def _segment(*frames: bytes, tail: bytes = b"", size: int = 1024) -> bytes:
    buf = encode_segment_header(1) + b"".join(frames) + tail
    return buf + bytes(size - len(buf))


def _frames() -> list[bytes]:
    return [encode_frame(lsn, lsn - 1, f"record {lsn}".encode() * 3) for lsn in (1, 2, 3)]


def _scanner_cases() -> list[tuple[str, bytes, Outcome]]:
    one, two, three = _frames()
    torn_payload = two[:-1] + bytes([two[-1] ^ 1])
    return [
        ("clean_end", _segment(one, two), Outcome.END),
        ("torn_header", _segment(one, two[:20]), Outcome.TRUNCATE_TAIL),
        ("torn_payload", _segment(one, torn_payload), Outcome.TRUNCATE_TAIL),
        ("short_file", _segment(one, size=len(encode_segment_header(1)) + len(one) + 50,
                                tail=two[:50]), Outcome.TRUNCATE_TAIL),
        ("damaged_header_vouched", _segment(one, b"X" + two[1:], three), Outcome.FAIL_CORRUPT),
        ("damaged_payload_vouched", _segment(one, torn_payload, three), Outcome.FAIL_CORRUPT),
        ("stale_frame_after_end", _segment(one, two, one), Outcome.TRUNCATE_TAIL),
    ]


@pytest.mark.parametrize(("buf", "outcome"), [(b, o) for _, b, o in _scanner_cases()],
                         ids=[i for i, _, _ in _scanner_cases()])
def test_recovery_table__scanner_stops__map_to_possible_rows(buf: bytes, outcome: Outcome) -> None:
    # Hand-made last segments: the facts the scanner reports select the expected row.
    stop = scan_segment(Path("x.wal"), buf).stop
    assert stop is not None
    facts = (stop.header_ok, stop.length_ok, stop.payload_ok, stop.rest_zero, True, stop.vouched)
    assert decide(facts).outcome == outcome, stop
