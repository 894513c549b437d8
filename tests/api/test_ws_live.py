"""/v1/ws subscriptions end to end (issue 6; PROTOCOL §6.4, §6.5, §3.14): ack, initial
pages, live changes, gzip frames, isolation, no gap / no duplicate across load and live,
resume with ``from``, unsubscribe, disconnect cleanup, KILL LIVE QUERY, SUBSCRIBE TO.

Real server, real WebSocket client; writes go through ``POST /v1/api/sql``.
"""

from __future__ import annotations

import json
from pathlib import Path

import trio

from tests.api.ws_client import WsClient, ws_connect
from tests.api.ws_harness import run_sql, subscribe_message, ws_server


async def authed(ws: WsClient) -> None:
    first = await ws.recv_json()
    assert first["type"] == "auth_success", first


async def live_ids(server, admin) -> list[str]:
    result = await run_sql(server, admin, "SELECT live_id FROM system.live")
    return [row[0] for row in result["results"][0]["rows"]]


async def until_gone(server, admin, expected: list[str]) -> None:
    # Polls: system.live lives in the server process; there is no event to wait on here.
    with trio.fail_after(5):
        while await live_ids(server, admin) != expected:  # noqa: ASYNC110
            await trio.sleep(0.05)


async def test_ws_subscribe__pages_changes_gzip_and_cleanup(tmp_path: Path) -> None:
    async with ws_server(tmp_path) as (server, users):
        values = ", ".join(f"({i}, '{'t' * 40}{i}', false)" for i in range(5))
        await run_sql(server, users.alice, f"INSERT INTO app.todos VALUES {values}")
        async with ws_connect(server, token=users.alice) as ws:
            await authed(ws)
            await ws.send(subscribe_message("s1", "SELECT id, title FROM app.todos "
                                            "WHERE done = false", {"batch_size": 2}))
            ack = await ws.recv_json()
            assert ack["type"] == "subscription_ack" and ack["total_rows"] == 0
            assert [f["name"] for f in ack["schema"]] == ["id", "title", "_seq"]
            assert ack["schema"][0]["flags"] == ["pk", "nn", "uq"]
            pages = [await ws.recv_json()]
            while pages[-1]["batch_control"]["has_more"]:
                last = pages[-1]["batch_control"]["last_seq_id"]
                assert isinstance(last, int)
                await ws.send({"type": "next_batch", "subscription_id": "s1",
                               "last_seq_id": last})
                pages.append(await ws.recv_json())
            assert [p["batch_control"]["status"] for p in pages] == [
                "loading", "loading_batch", "ready"]
            rows = [r for p in pages for r in p["rows"]]
            assert [r["id"] for r in rows] == ["0", "1", "2", "3", "4"]
            assert set(rows[0]) == {"id", "title", "_seq"}
            assert pages[-1]["batch_control"]["last_seq_id"] == int(rows[-1]["_seq"])
            # live: insert / update (delta) / delete
            await run_sql(server, users.alice, "INSERT INTO app.todos VALUES (9, 'n', false)")
            insert = await ws.recv_json()
            assert (insert["change_type"], insert["rows"][0]["id"]) == ("insert", "9")
            await run_sql(server, users.alice, "UPDATE app.todos SET title = 'm' WHERE id = 9")
            update = await ws.recv_json()
            assert update["rows"] == [{"id": "9", "_seq": update["rows"][0]["_seq"],
                                       "title": "m"}]
            assert update["old_values"] == [{"id": "9", "_seq": insert["rows"][0]["_seq"],
                                             "title": "n"}]
            await run_sql(server, users.alice, "DELETE FROM app.todos WHERE id = 9")
            delete = await ws.recv_json()
            assert "rows" not in delete and delete["old_values"][0]["_deleted"] is True
            # a big message is a gzip binary frame; a small one text
            big = ", ".join(f"({i}, '{'x' * 50}', false)" for i in range(100, 130))
            await run_sql(server, users.alice, f"INSERT INTO app.todos VALUES {big}")
            frame = await ws.recv()
            assert frame.kind == "bytes" and frame.data[:2] == b"\x1f\x8b"
            assert len(frame.json()["rows"]) == 30
            (live_id,) = await live_ids(server, users.admin)
            assert live_id.startswith("alice-") and live_id.endswith("-s1")
        await until_gone(server, users.admin, [])  # disconnect cleans system.live


async def test_ws_subscribe__compress_false__text_frames(tmp_path: Path) -> None:
    async with ws_server(tmp_path) as (server, users), \
            ws_connect(server, token=users.alice, query="compress=FALSE") as ws:
        await authed(ws)
        await ws.send(subscribe_message("s", "SELECT * FROM app.todos", with_options=False))
        ack = await ws.recv_json()
        assert ack["batch_control"]["status"] == "ready"  # no options: no initial data
        big = ", ".join(f"({i}, '{'x' * 50}', false)" for i in range(30))
        await run_sql(server, users.alice, f"INSERT INTO app.todos VALUES {big}")
        frame = await ws.recv()
        assert frame.kind == "text" and len(frame.data) > 512
        assert frame.json()["type"] == "change"
        await ws.send({"type": "unsubscribe", "subscription_id": "s"})
        await until_gone(server, users.admin, [])
        await run_sql(server, users.alice, "INSERT INTO app.todos VALUES (99, 'x', true)")
        assert await ws.quiet(0.5) == []


async def test_ws_isolation__user_rows_only_to_owner_shared_to_all(tmp_path: Path) -> None:
    async with ws_server(tmp_path) as (server, users), \
            ws_connect(server, token=users.alice) as a, \
            ws_connect(server, token=users.bob) as b:
        for ws in (a, b):
            await authed(ws)
            await ws.send(subscribe_message("t", "SELECT * FROM app.todos", {}))
            await ws.send(subscribe_message("b", "SELECT * FROM app.board", {}))
            for _ in range(4):  # two acks, two empty batches
                await ws.recv_json()
        await run_sql(server, users.bob, "INSERT INTO app.todos VALUES (1, 'bob', false)")
        await run_sql(server, users.admin, "INSERT INTO app.board VALUES (1, 'all')")
        got_b = [await b.recv_json(), await b.recv_json()]
        got_a = [await a.recv_json()]
        assert [(m["subscription_id"], m["rows"][0].get("title") or m["rows"][0]["note"])
                for m in got_b] == [("t", "bob"), ("b", "all")]
        assert got_a[0]["subscription_id"] == "b"
        assert await a.quiet(0.3) == []


async def _writer(server, token: str, start: int, count: int) -> None:
    for i in range(start, start + count):
        await run_sql(server, token, f"INSERT INTO app.board VALUES ({i}, 'w')")


async def test_ws_load_and_live__concurrent_inserts__no_gap_no_duplicate(
        tmp_path: Path) -> None:
    # Writers insert while the subscription pages its initial load; every id arrives once.
    async with ws_server(tmp_path) as (server, users):
        await _writer(server, users.admin, 0, 40)
        async with ws_connect(server, token=users.alice) as ws, trio.open_nursery() as nursery:
            await authed(ws)
            for k in range(3):
                nursery.start_soon(_writer, server, users.admin, 1000 * (k + 1), 30)
            await trio.sleep(0.05)
            await ws.send(subscribe_message("s", "SELECT id FROM app.board",
                                            {"batch_size": 7}))
            seqs: list[int] = []
            ids: list[str] = []
            kinds: set[str] = set()
            message = await ws.recv_json()  # the ack
            while len(ids) < 130:
                message = await ws.recv_json()
                kinds.add(message["type"])
                rows = message["rows"]
                ids += [r["id"] for r in rows]
                seqs += [int(r["_seq"]) for r in rows]
                control = message.get("batch_control")
                if control and control["has_more"]:
                    await ws.send({"type": "next_batch", "subscription_id": "s",
                                   "last_seq_id": control["last_seq_id"]})
            assert await ws.quiet(0.3) == []  # and nothing twice
        assert len(ids) == len(set(ids)) == 130
        assert seqs == sorted(seqs)
        assert kinds == {"initial_data_batch", "change"}


async def test_ws_resume__from__exactly_what_came_after(tmp_path: Path) -> None:
    async with ws_server(tmp_path) as (server, users):
        await _writer(server, users.admin, 0, 3)
        async with ws_connect(server, token=users.alice) as ws:
            await authed(ws)
            await ws.send(subscribe_message("s", "SELECT * FROM app.board", {}))
            await ws.recv_json()
            last = (await ws.recv_json())["batch_control"]["last_seq_id"]
        await _writer(server, users.admin, 3, 4)
        async with ws_connect(server, token=users.alice) as ws:
            await authed(ws)
            await ws.send(subscribe_message("s", "SELECT * FROM app.board", {"from": last}))
            await ws.recv_json()
            batch = await ws.recv_json()
        assert [r["id"] for r in batch["rows"]] == ["3", "4", "5", "6"]


async def test_ws_kill_live_query_and_subscribe_to(tmp_path: Path) -> None:
    async with ws_server(tmp_path) as (server, users):
        async with ws_connect(server, token=users.alice) as ws:
            await authed(ws)
            await ws.send(subscribe_message("s", "SELECT * FROM app.board", with_options=False))
            await ws.recv_json()
            (live_id,) = await live_ids(server, users.admin)
            assert live_id.startswith("alice-") and live_id.endswith("-s")
            denied = await run_sql_status(server, users.alice, f"KILL LIVE QUERY '{live_id}'")
            assert denied == 403
            result = await run_sql(server, users.admin, f"KILL LIVE QUERY '{live_id}'")
            assert result["results"][0]["message"] == f"Live query killed: {live_id}"
            assert await live_ids(server, users.admin) == []
            await run_sql(server, users.admin, "INSERT INTO app.board VALUES (1, 'x')")
            assert await ws.quiet(0.3) == []
        result = await run_sql(server, users.alice, "SUBSCRIBE TO app.todos WHERE done = false")
        status, url, body, _ = result["results"][0]["rows"][0]
        assert (status, url) == ("active", f"ws://{server.host}:{server.port}/v1/ws")
        assert json.loads(body)["sql"] == "SELECT * FROM app.todos WHERE done = false"


async def run_sql_status(server, token: str, text: str) -> int:
    from tests.api.auth_client import sql

    return (await sql(server, token, text)).status


async def test_ws_dropped_table__error_not_found_and_system_live_empty(tmp_path: Path) -> None:
    async with ws_server(tmp_path) as (server, users), \
            ws_connect(server, token=users.alice) as ws:
        await authed(ws)
        await ws.send(subscribe_message("b1", "SELECT * FROM app.board", None))
        assert (await ws.recv_json())["type"] == "subscription_ack"
        assert len(await live_ids(server, users.admin)) == 1
        await run_sql(server, users.admin, "DROP TABLE app.board")
        error = await ws.recv_json()
        assert (error["type"], error["subscription_id"], error["code"]) == (
            "error", "b1", "NOT_FOUND")
        assert await live_ids(server, users.admin) == []
        await ws.send({"type": "ping"})  # the socket stays open for other subscriptions
        await ws.send(subscribe_message("t1", "SELECT * FROM app.todos", None))
        assert (await ws.recv_json())["type"] == "subscription_ack"
