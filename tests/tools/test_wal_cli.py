"""The ``sluice`` command: ``wal inspect / verify / dump / init`` on logs built with open_wal.

Most tests call ``tools.cli.main(argv)`` in-process and read capsys; the ones about exit
codes and the entry point run the installed console script in a subprocess. Logs are written
one append per group commit, so every frame records the previous ones as durable: a damaged
middle frame is then corruption, while garbage after the last frame is a torn tail.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import pytest
import trio

from tests.wal.harness import SMALL, record
from tools.cli import COMMANDS, EXIT_USAGE, GROUPS, main
from wal import Frame, WalConfig, iter_frames, open_wal
from wal.format import FRAME_HEADER_SIZE, segment_name

SLUICE = Path(sys.executable).parent / "sluice"
GARBAGE = b"\xde\xad\xbe\xef" * 8
FIRST = segment_name(1)


def write_log(directory: Path, payloads: Sequence[bytes], config: WalConfig = SMALL) -> None:
    """Appends each payload in its own group commit (so each frame vouches for the last)."""

    async def append_all() -> None:
        async with open_wal(directory, config) as wal:
            for payload in payloads:
                await wal.append(payload)

    trio.run(append_all)


def frames(directory: Path) -> list[Frame]:
    return list(iter_frames(directory))


def tear_tail(directory: Path) -> int:
    """Writes garbage right after the last frame, as a torn unacknowledged write; returns
    the offset of the garbage."""
    last = frames(directory)[-1]
    offset = last.offset + FRAME_HEADER_SIZE + last.stored_len
    with open(directory / segment_name(last.segment_base_lsn), "r+b") as f:
        f.seek(offset)
        f.write(GARBAGE)
    return offset


def flip_payload_bit(directory: Path, lsn: int) -> int:
    """Flips bit 0 of payload byte 3 of record ``lsn``; returns the frame's offset."""
    frame = frames(directory)[lsn - 1]
    assert frame.lsn == lsn
    with open(directory / segment_name(frame.segment_base_lsn), "r+b") as f:
        f.seek(frame.offset + FRAME_HEADER_SIZE + 3)
        byte = f.read(1)[0]
        f.seek(-1, 1)
        f.write(bytes([byte ^ 0x01]))
    return frame.offset


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def run_sluice(*args: object) -> subprocess.CompletedProcess[str]:
    """Runs the installed console script, as an operator would."""
    return subprocess.run([str(SLUICE), *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)


def sluice(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Runs ``main(argv)`` in-process; returns (exit code, stdout, stderr)."""
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: str, first_cell: str) -> list[list[str]]:
    """The whitespace-split table rows of ``out`` that start with ``first_cell``."""
    return [line.split() for line in out.splitlines() if line.startswith(first_cell)]


# ---- the command line itself ---------------------------------------------------------------

def test_cli__version__prints_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    # --version comes from the installed distribution's metadata.
    assert sluice(capsys, "--version") == (0, f"sluice {metadata.version('sluice')}\n", "")


@pytest.mark.parametrize("argv", [[], ["wal"], ["bogus"], ["wal", "bogus"],
                                  ["wal", "dump", "--limit", "x", "d"], ["wal", "verify"]])
def test_cli__usage_errors__exit_64_on_stderr(capsys: pytest.CaptureFixture[str],
                                              argv: list[str]) -> None:
    # 64, not argparse's 2, so that 2 always means "corrupt".
    code, out, err = sluice(capsys, *argv)
    assert (code, out) == (EXIT_USAGE, "")
    assert "usage: sluice" in err


def test_cli__wal_help__lists_every_wal_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = sluice(capsys, "wal", "--help")
    assert code == 0
    for word in ("inspect", "verify", "dump", "init", "exit codes:", "not a WAL directory"):
        assert word in out


def test_cli__command_table__lazy_string_targets_that_resolve() -> None:
    # Targets are "module:function" strings; importing tools.cli imports neither wal nor trio.
    for path, command in COMMANDS.items():
        module, _, function = command.target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), path
        assert all(path[:n] in GROUPS for n in range(len(path))), f"{path}: a prefix has no help"
    probe = "import sys, tools.cli; print(sorted({'wal', 'trio'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == "[]"


# ---- inspect -------------------------------------------------------------------------------

def test_inspect__rolled_log__segment_and_frame_tables(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 40 records over 8 KiB segments; every 3rd is 900 bytes and stored as zstd.
    write_log(tmp_path, [record(i, 900 if i % 3 == 0 else 400) for i in range(1, 41)])
    written = frames(tmp_path)
    code, out, _ = sluice(capsys, "wal", "inspect", tmp_path, "--frames", 0)
    assert code == 0
    bases = sorted({frame.segment_base_lsn for frame in written})
    assert len(bases) >= 2
    segment_rows = [row for row in rows(out, "0") if len(row) == 8 and row[5] == "/"]
    for row, base in zip(segment_rows, bases, strict=True):
        mine = [frame for frame in written if frame.segment_base_lsn == base]
        assert row[:4] == [segment_name(base), str(base), str(len(mine)), str(mine[-1].lsn)]
        assert row[7] == "ok"
    frame_rows = [row for row in rows(out, "0") if len(row) == 8 and row[5] != "/"]
    assert len(frame_rows) == 40
    # Not engine events: the TYPE column says so with "?".
    assert frame_rows[0] == [FIRST, "32", "1", "400", "400", "raw", "ok", "?"]
    third = written[2]
    assert frame_rows[2] == [FIRST, str(third.offset), "3", str(third.stored_len), "900",
                             "zstd", "ok", "?"]
    assert "clean: " in out
    assert "records 1..40 (40)" in out


def test_inspect__frames_limit_and_segment_filter(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --frames caps the table with a "more" line; --segment keeps one segment.
    write_log(tmp_path, [record(i, 400) for i in range(1, 31)])
    _, out, _ = sluice(capsys, "wal", "inspect", tmp_path, "--frames", 3)
    assert len(rows(out, FIRST)) == 1 + 3
    assert "… 27 more rows" in out
    second = sorted({frame.segment_base_lsn for frame in frames(tmp_path)})[1]
    _, out, _ = sluice(capsys, "wal", "inspect", tmp_path, "--segment", second, "--frames", 0)
    assert rows(out, FIRST) == []
    assert len(rows(out, segment_name(second))) >= 2
    code, _, err = sluice(capsys, "wal", "inspect", tmp_path, "--segment", 999)
    assert code == EXIT_USAGE
    assert "no segment with base LSN 999" in err


def test_inspect__corrupt_middle_frame__status_and_failing_row(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The damaged frame gets a CRC FAIL row; inspect itself still exits 0.
    write_log(tmp_path, [record(i) for i in range(1, 6)])
    offset = flip_payload_bit(tmp_path, 2)
    code, out, _ = sluice(capsys, "wal", "inspect", tmp_path)
    assert code == 0
    assert f"CORRUPT at byte {offset}" in out
    assert rows(out, FIRST)[-1][:8] == [FIRST, str(offset), "2", "24", "24", "raw", "FAIL",
                                        "<-"]
    assert "payload CRC mismatch" in out


# ---- verify --------------------------------------------------------------------------------

def test_verify__clean_log__exit_0(tmp_path: Path) -> None:
    write_log(tmp_path, [record(i) for i in range(1, 6)])
    result = run_sluice("wal", "verify", tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "clean: 1 segment(s), records 1..5 (5)\n"


def test_verify__torn_tail__exit_1_with_offset_bytes_and_rule(tmp_path: Path) -> None:
    # Garbage after the last frame: the next open would cut exactly those bytes.
    write_log(tmp_path, [record(i) for i in range(1, 6)])
    offset = tear_tail(tmp_path)
    result = run_sluice("wal", "verify", tmp_path)
    assert result.returncode == 1
    assert f"torn tail: {tmp_path / FIRST} at byte {offset}\n" in result.stdout
    assert f"{len(GARBAGE)} bytes would be cut" in result.stdout
    assert "rule:   torn header at the end of the log, never recorded as durable" in result.stdout
    assert "valid:  records 1..5 (5)" in result.stdout


def test_verify__flipped_byte_in_middle_frame__exit_2_names_segment_and_offset(
        tmp_path: Path) -> None:
    # Frame 3 vouches for frame 2, so damage to 2 is corruption of durable data.
    write_log(tmp_path, [record(i) for i in range(1, 6)])
    offset = flip_payload_bit(tmp_path, 2)
    result = run_sluice("wal", "verify", tmp_path)
    assert result.returncode == 2
    assert f"corrupt: {tmp_path / FIRST} at byte {offset}\n" in result.stdout
    assert "reason: payload CRC mismatch" in result.stdout


def test_verify__missing_directory__exit_3(tmp_path: Path) -> None:
    result = run_sluice("wal", "verify", tmp_path / "nope")
    assert (result.returncode, result.stdout) == (3, "")
    assert "not a WAL directory" in result.stderr
    assert "does not exist" in result.stderr


@pytest.mark.parametrize("kind", ["empty directory", "file"])
def test_verify__not_a_log__exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   kind: str) -> None:
    target = tmp_path / "x"
    if kind == "file":
        target.write_bytes(b"hello")
    else:
        target.mkdir()
    code, _, err = sluice(capsys, "wal", "verify", target)
    assert code == 3
    assert "not a WAL directory" in err


def test_verify__leftover_temp_file__reported_but_clean(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path, [record(1)])
    (tmp_path / (segment_name(2) + ".tmp")).write_bytes(b"")
    code, out, _ = sluice(capsys, "wal", "verify", tmp_path)
    assert code == 0
    assert f"temp file: {tmp_path / (segment_name(2) + '.tmp')}" in out


def test_read_only_commands__never_change_a_torn_log(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # inspect, verify and dump diagnose a torn tail and a temp file but repair nothing.
    write_log(tmp_path, [record(i) for i in range(1, 6)])
    tear_tail(tmp_path)
    (tmp_path / "spare.tmp").write_bytes(b"\x00" * 64)
    before = snapshot(tmp_path)
    for command in ("inspect", "verify", "dump"):
        sluice(capsys, "wal", command, tmp_path)
    assert snapshot(tmp_path) == before


# ---- dump ----------------------------------------------------------------------------------

def test_dump__hex__header_hex_rows_and_ascii(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path, [b"hello, sluice!\x00\x01\xff" + bytes(range(40))])
    code, out, _ = sluice(capsys, "wal", "dump", tmp_path, "--bytes", 32)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"LSN 1  {FIRST} byte 32  57 bytes (raw)"
    assert lines[1].startswith("  event: undecodable event")
    assert lines[2] == ("  00000000  68 65 6c 6c 6f 2c 20 73  6c 75 69 63 65 21 00 01  "
                        "|hello, sluice!..|")
    assert lines[3].startswith("  00000010  ff 00 01 02")
    assert lines[4] == "  … 25 more bytes (--bytes 0 shows all)"


def test_dump__json__every_record_as_appended(tmp_path: Path) -> None:
    # The real console script, all records: payloads (raw and zstd) match what was appended.
    payloads = [record(i, 900 if i % 4 == 0 else 30) for i in range(1, 26)]
    write_log(tmp_path, payloads)
    result = run_sluice("wal", "dump", tmp_path, "--json", "--limit", 0)
    assert (result.returncode, result.stderr) == (0, "")
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [bytes.fromhex(o["payload_hex"]) for o in objects] == payloads
    assert [o["lsn"] for o in objects] == list(range(1, 26))
    assert [o["compressed"] for o in objects] == [i % 4 == 0 for i in range(1, 26)]
    positions = [(segment_name(f.segment_base_lsn), f.offset) for f in frames(tmp_path)]
    assert [(o["segment"], o["offset"]) for o in objects] == positions
    assert objects[3]["length"] == 900
    assert objects[3]["stored_length"] < 900


def test_dump__from_and_limit__a_window(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path, [record(i, 400) for i in range(1, 31)])
    _, out, _ = sluice(capsys, "wal", "dump", tmp_path, "--json", "--from", 18, "--limit", 5)
    assert [json.loads(line)["lsn"] for line in out.splitlines()] == [18, 19, 20, 21, 22]
    _, out, _ = sluice(capsys, "wal", "dump", tmp_path)
    assert out.count("\nLSN ") + out.startswith("LSN ") == 20
    assert out.endswith("… more records follow (--from 21)\n")


def test_dump__corrupt_before_limit__valid_records_then_error_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path, [record(i) for i in range(1, 6)])
    offset = flip_payload_bit(tmp_path, 3)
    code, out, err = sluice(capsys, "wal", "dump", tmp_path, "--json")
    assert code == 2
    assert [json.loads(line)["lsn"] for line in out.splitlines()] == [1, 2]
    assert f"corrupt: {tmp_path / FIRST} at byte {offset}: payload CRC mismatch" in err
    code, out, _ = sluice(capsys, "wal", "dump", tmp_path, "--json", "--limit", 2)
    assert (code, len(out.splitlines())) == (0, 2)  # the damage lies past the limit


def test_dump__torn_tail__valid_records_exit_0(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path, [record(i) for i in range(1, 4)])
    tear_tail(tmp_path)
    code, out, err = sluice(capsys, "wal", "dump", tmp_path, "--json")
    assert [bytes.fromhex(json.loads(line)["payload_hex"]) for line in out.splitlines()] == [
        record(1), record(2), record(3)]
    assert code == 0
    assert "torn tail" in err


# ---- init ----------------------------------------------------------------------------------

def test_init__empty_directory__creates_the_first_segment(tmp_path: Path) -> None:
    # The real console script with the default configuration (one 64 MiB segment).
    result = run_sluice("wal", "init", tmp_path / "wal")
    assert (result.returncode, result.stderr) == (0, "")
    segment = tmp_path / "wal" / FIRST
    assert segment.stat().st_size == WalConfig().segment_size_max_bytes
    assert f"created:   {FIRST} ({segment.stat().st_size} bytes)" in result.stdout
    assert "last LSN:  0 (empty log)" in result.stdout
    assert "tail:      clean" in result.stdout
    assert run_sluice("wal", "verify", tmp_path / "wal").returncode == 0


def test_init__torn_log__cuts_the_tail_and_reports_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path, [record(i) for i in range(1, 6)])
    offset = tear_tail(tmp_path)
    code, out, _ = sluice(capsys, "wal", "init", tmp_path)
    assert code == 0
    copy = tmp_path / f"{FIRST}.broken-{offset}"
    assert f"tail:      cut {len(GARBAGE)} bytes at byte {offset} of {FIRST}" in out
    assert f"copy kept in {copy}" in out
    assert "last LSN:  5\n" in out
    assert copy.read_bytes() == GARBAGE
    assert sluice(capsys, "wal", "verify", tmp_path)[0] == 0


def test_init__corrupt_log__exit_2_and_nothing_changed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path, [record(i) for i in range(1, 6)])
    offset = flip_payload_bit(tmp_path, 2)
    before = snapshot(tmp_path)
    code, out, err = sluice(capsys, "wal", "init", tmp_path)
    assert (code, out) == (2, "")
    assert f"{tmp_path / FIRST} at byte {offset}" in err
    assert snapshot(tmp_path) == before


def test_init__directory_of_other_files__refused_exit_3(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A typo such as `sluice wal init .` must not drop a 64 MiB segment into a project.
    (tmp_path / "notes.txt").write_text("not a log")
    code, _, err = sluice(capsys, "wal", "init", tmp_path)
    assert code == 3
    assert "refusing to create a log" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


async def test_init__log_open_by_another_writer__exit_4_nothing_touched(tmp_path: Path) -> None:
    # While this process holds the log open, `sluice wal init` (a subprocess) is refused.
    async with open_wal(tmp_path, SMALL) as wal:
        await wal.append(b"held")
        done = await trio.to_thread.run_sync(lambda: subprocess.run(
            [str(Path(sys.executable).with_name("sluice")), "wal", "init", str(tmp_path)],
            capture_output=True, text=True, check=False))
        assert done.returncode == 4, done.stderr
        assert "already open" in done.stderr
        assert await wal.append(b"still mine") == 2


async def test_dump_and_inspect__engine_events__decoded(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A log written by the engine: inspect names each event kind, dump describes it.
    from tests.engine.harness import ROOT, engine_at
    from tests.engine.harness import sql as run_sql

    async with engine_at(tmp_path) as engine:
        await run_sql(engine, ROOT, "CREATE NAMESPACE app; CREATE TABLE app.t (id INT PRIMARY KEY)")
        await run_sql(engine, ROOT, "INSERT INTO app.t (id) VALUES (1), (2)")
    wal_dir = tmp_path / "wal"
    code, out, _ = sluice(capsys, "wal", "inspect", wal_dir)
    assert code == 0
    assert "NAMESPACE_CREATED" in out and "TABLE_CREATED" in out and "ROWS_COMMITTED" in out
    code, out, _ = sluice(capsys, "wal", "dump", wal_dir, "--limit", 0)
    assert "event: ROWS_COMMITTED by root: insert 2 row(s)" in out
    assert "event: NAMESPACE_CREATED app" in out
