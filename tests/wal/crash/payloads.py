"""Self-describing record payloads, and the checker every crash test runs on a recovered log.

A payload starts with a header naming its seed, its append call, its position in that call and
its body size; the body follows from the header. So a checker can tell a whole submitted record
from a damaged or foreign one, and knows which records were one ``append_batch``, without
keeping the payloads (the kill tests' child process generates its own).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.wal.harness import SMALL
from wal import Frame, WalConfig, open_wal
from wal.format import TEMP_SUFFIX, encode_frame
from wal.recovery import analyze

_HEADER = re.compile(rb"s(\d+)c(\d+)i(\d+)n(\d+)z(\d+)\|")


@dataclass(frozen=True, slots=True)
class PayloadId:
    seed: int
    call: int
    index: int  # position inside its append call
    count: int  # records in that call (1 for append, more for append_batch)


def make_payload(seed: int, call: int, index: int, count: int, size: int) -> bytes:
    head = f"s{seed}c{call}i{index}n{count}z{size}|".encode()
    body = hashlib.shake_128(head).digest(size)
    if size and body[0] < 77:  # 30% compressible, so long ones take the zstd codec
        body = (body[:8] * (size // 8 + 1))[:size]
    return head + body


def payload_size(rng: random.Random) -> int:
    """Mostly small bodies, some past ``SMALL.compress_min_bytes``, all within its record limit."""
    draw = rng.random()
    if draw < 0.6:
        return rng.randint(1, 120)
    if draw < 0.9:
        return rng.randint(120, 500)
    return rng.randint(500, 1500)


def make_call(seed: int, call: int, rng: random.Random) -> list[bytes]:
    """The payloads of one append call: one record (70%) or a batch of 2-6."""
    count = 1 if rng.random() < 0.7 else rng.randint(2, 6)
    return [make_payload(seed, call, i, count, payload_size(rng)) for i in range(count)]


def parse_payload(payload: bytes) -> PayloadId | None:
    """The identity of a whole, undamaged payload; None for anything else."""
    match = _HEADER.match(payload)
    if match is None:
        return None
    seed, call, index, count, size = map(int, match.groups())
    if payload != make_payload(seed, call, index, count, size):
        return None
    return PayloadId(seed, call, index, count)


def digest(payload: bytes) -> str:
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


@dataclass(slots=True)
class Ledger:
    """What one in-process workload had acknowledged: LSN -> payload digest."""

    seed: int
    acked: dict[int, str] = field(default_factory=dict)

    def record(self, lsns: Sequence[int], payloads: Sequence[bytes]) -> None:
        for lsn, payload in zip(lsns, payloads, strict=True):
            assert lsn not in self.acked, f"LSN {lsn} acknowledged twice"
            self.acked[lsn] = digest(payload)


async def make_torn_log(directory: Path, config: WalConfig, *, seed: int, records: int,
                        size: int = 300) -> dict[int, str]:
    """A closed log of ``records`` records, then the first 60 bytes of one more frame after the
    last (a torn tail) and a leftover ``.tmp`` file, so the next open runs the whole recovery.
    Returns the records (LSN -> digest)."""
    acked = {}
    async with open_wal(directory, config) as wal:
        for i in range(records):
            payload = make_payload(seed, i, 0, 1, size)
            acked[await wal.append(payload)] = digest(payload)
    last = analyze(directory).scans[-1]
    torn = encode_frame(last.last_lsn + 1, last.last_lsn, make_payload(seed, records, 0, 1, size))
    with open(last.path, "r+b") as segment:
        segment.seek(last.end_offset)
        segment.write(torn[:60])
    (directory / f"00000000000000000099.wal{TEMP_SUFFIX}").write_bytes(bytes(100))
    return acked


async def read_back(directory: Path, config: WalConfig = SMALL) -> tuple[list[Frame], int]:
    """Reopens the log with the real FileIO (running recovery); returns its records and
    first LSN."""
    async with open_wal(directory, config) as wal:
        return list(wal.read_from(wal.first_lsn)), wal.first_lsn


def check_recovered(frames: Sequence[Frame], *, seed: int, acked: Mapping[int, str],
                    durable: Iterable[int], first_lsn: int = 1,
                    restarts: Collection[int] = ()) -> list[str]:
    """Problems with a recovered log; empty when it is fine.

    ``acked`` maps LSN -> digest for every append that returned; ``durable`` lists the LSNs that
    must be present. Checks: LSNs are contiguous from ``first_lsn``; every payload is a whole
    record this run submitted, each at most once (nothing unacknowledged comes back damaged);
    the records of one append call sit at consecutive LSNs in order (a batch is cut only at the
    end of the log, or where a restarted process appended its first record: an LSN in
    ``restarts``); an acknowledged LSN holds its acknowledged bytes; every durable LSN at or
    after ``first_lsn`` (retention may delete older ones) is present.
    """
    problems: list[str] = []
    ids: dict[int, PayloadId] = {}
    seen: dict[tuple[int, int], int] = {}
    for position, frame in enumerate(frames):
        if frame.lsn != first_lsn + position:
            problems.append(f"LSN {frame.lsn} at position {position}: not contiguous from "
                            f"{first_lsn}")
            break
        pid = parse_payload(frame.payload)
        if pid is None or pid.seed != seed:
            problems.append(f"LSN {frame.lsn}: not a whole record of this run "
                            f"({len(frame.payload)} bytes: {frame.payload[:32]!r})")
            continue
        if (pid.call, pid.index) in seen:
            problems.append(f"LSN {frame.lsn}: record {pid.call}[{pid.index}] already at LSN "
                            f"{seen[pid.call, pid.index]}")
        seen[pid.call, pid.index] = frame.lsn
        ids[frame.lsn] = pid
        if frame.lsn in acked and digest(frame.payload) != acked[frame.lsn]:
            problems.append(f"LSN {frame.lsn}: holds record {pid.call}[{pid.index}], not the "
                            f"one acknowledged for it")
    last = frames[-1].lsn if frames else first_lsn - 1
    problems += _batch_problems(ids, first_lsn, last, restarts)
    present = {frame.lsn for frame in frames}
    lost = sorted(lsn for lsn in durable if lsn >= first_lsn and lsn not in present)
    if lost:
        problems.append(f"{len(lost)} acknowledged durable records lost, LSNs {lost[:12]}"
                        f"{' ...' if len(lost) > 12 else ''}; the recovered log is "
                        f"{first_lsn}..{last}")
    return problems


def _batch_problems(ids: Mapping[int, PayloadId], first_lsn: int, last_lsn: int,
                    restarts: Collection[int]) -> list[str]:
    problems = []
    for lsn, pid in ids.items():
        before, after = ids.get(lsn - 1), ids.get(lsn + 1)
        if pid.index > 0 and lsn > first_lsn and (
                before is None or (before.call, before.index) != (pid.call, pid.index - 1)):
            problems.append(f"LSN {lsn}: record {pid.call}[{pid.index}] does not follow "
                            f"{pid.call}[{pid.index - 1}]")
        if pid.index < pid.count - 1 and lsn < last_lsn and lsn + 1 not in restarts and (
                after is None or (after.call, after.index) != (pid.call, pid.index + 1)):
            problems.append(f"LSN {lsn}: batch {pid.call} is cut inside the log")
    return problems


def describe(problems: Sequence[str], limit: int = 12) -> str:
    shown = "\n  ".join(problems[:limit])
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"  {shown}{more}"
