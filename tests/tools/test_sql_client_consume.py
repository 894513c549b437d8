"""`sluice consume`: the decoding of topic messages (PROTOCOL §4.2) into output lines, and
consuming a real server's topic with and without acknowledgements (§4.3)."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from pathlib import Path

import trio

from tests.api.harness import ROOT, running_server
from tests.tools.client_harness import FAST_BCRYPT, ROOT_PASSWORD, client_env, sluice
from tools.consume import decode_payload, message_line


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_consume__payload_decoding__json_text_or_bytes() -> None:
    row = {"id": "7012", "msg": "hi", "_table": "shop.orders"}
    assert decode_payload(_b64(json.dumps(row).encode())) == {"payload": row}
    assert decode_payload(_b64("plain text, café".encode())) == {"payload": "plain text, café"}
    assert decode_payload(_b64(b"\xff\x00")) == {"payload_base64": _b64(b"\xff\x00")}
    assert decode_payload("not base64!") == {"payload_base64": "not base64!"}
    assert decode_payload(None) == {"payload": None}


def test_consume__message_line__one_json_object_with_every_field() -> None:
    message = {"topic_id": "shop.events", "partition_id": 0, "offset": 3, "key": None,
               "payload": _b64(b'{"id":"1"}'), "timestamp_ms": 1767139200123, "op": "Insert"}
    assert json.loads(message_line(message)) == {
        "topic_id": "shop.events", "partition_id": 0, "offset": 3, "key": None, "op": "Insert",
        "user": None, "timestamp_ms": 1767139200123, "payload": {"id": "1"}}


async def test_consume__reads_acks_and_resumes_against_a_real_server(tmp_path: Path) -> None:
    # Rows inserted into a table routed to a topic come out as JSON lines; acked offsets are
    # not delivered again to the group; --no-ack leaves the group's offset where it was.
    (tmp_path / "server.toml").write_text(FAST_BCRYPT)
    home = tmp_path / "home"
    async with running_server(tmp_path, KALAMDB_ROOT_PASSWORD=ROOT_PASSWORD) as server:
        env = {"SLUICE_PASSWORD": ROOT_PASSWORD}
        url = ("--url", server.base_url)
        run = await sluice(home, "sql", *url, "-c", (
            "CREATE NAMESPACE app; CREATE TABLE app.items (id BIGINT PRIMARY KEY, name TEXT) "
            "WITH (TYPE='SHARED'); CREATE TOPIC app.events; "
            "ALTER TOPIC app.events ADD SOURCE app.items ON INSERT; "
            "INSERT INTO app.items (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')"), **env)
        assert run.code == 0, run.err

        async def consume(*args: str, group: str = "g") -> list[dict]:
            run = await sluice(home, "consume", "app.events", "--group", group, *url, *args,
                               **env)
            assert run.code == 0, run.err
            return [json.loads(line) for line in run.out.splitlines()]

        # A peek (its own group: unacked claims hold a group's messages for a while).
        peeked = await consume("--from", "earliest", "--no-ack", "--limit", "2", group="peek")
        assert [m["payload"]["name"] for m in peeked] == ["a", "b", "c"]
        assert [m["offset"] for m in peeked] == [0, 1, 2] and peeked[0]["op"] == "Insert"
        run = await sluice(home, "sql", *url, "-c", "SELECT group_id, last_acked_offset "
                           "FROM system.topic_offsets", "--format", "csv", **env)
        assert run.out.splitlines() == ["group_id,last_acked_offset"], run  # nothing acked
        first = await consume("--from", "earliest", "--max-messages", "2")
        assert [m["offset"] for m in first] == [0, 1]
        rest = await consume("--from", "earliest")
        assert [m["offset"] for m in rest] == [2]
        assert await consume("--from", "earliest") == []
        run = await sluice(home, "consume", "app.nope", "--group", "g", *url, **env)
        assert run.code == 1 and "NOT_FOUND" in run.err
        await _check_follow(home, url, env)


async def _check_follow(home: Path, url: tuple[str, str], env: dict[str, str]) -> None:
    # --follow keeps long-polling: a row inserted while it waits is printed; Ctrl-C ends it
    # with exit code 0.
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tools.cli", "consume", "app.events", "--group", "live",
         "--from", "earliest", "--follow", "--poll-seconds", "30", *url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env(home, **env),
        cwd=ROOT)
    try:
        await trio.sleep(1.5)  # likely waiting on the long poll by now (not required)
        run = await sluice(home, "sql", *url, "-c",
                           "INSERT INTO app.items (id, name) VALUES (4, 'live')", **env)
        assert run.code == 0, run.err
        assert process.stdout is not None
        received = b""
        with trio.fail_after(15):
            while received.count(b"\n") < 4:  # offsets 0-2 from before, then the new row
                received += await process.stdout.receive_some(65536)
        names = [json.loads(line)["payload"]["name"] for line in received.splitlines()]
        assert names == ["a", "b", "c", "live"]
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
