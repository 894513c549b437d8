"""The interactive `sluice sql` shell driven through a pseudo-terminal, as a user types:
password prompt, multi-line statements, the aligned table, an error that does not end the
session, backslash commands, Ctrl-C, history recall (Ctrl-P) and the history file across
sessions; and `sluice setup`'s prompts (passwords typed twice, not echoed)."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.api.harness import running_server
from tests.tools.client_harness import FAST_BCRYPT, ROOT_PASSWORD, PtySession, sluice

PROMPT = "root@default=> "


def _first_session(session: PtySession) -> None:
    session.expect("Password for root: ")
    session.send(ROOT_PASSWORD + "\n")
    session.expect("Type \\help for help")
    session.expect(PROMPT)
    session.send("CREATE NAMESPACE app;\n")
    session.expect("Namespace 'app' created")
    session.expect(PROMPT)
    session.send("CREATE TABLE app.notes (id BIGINT PRIMARY KEY,\n")
    session.expect("-> ")  # the statement continues on the next line
    session.send("body TEXT) WITH (TYPE='USER');\n")
    session.expect(PROMPT)
    session.send("INSERT INTO app.notes (id, body) VALUES (1, 'first'), (22, NULL);\n")
    session.expect("Inserted 2 row(s)")
    session.send("USE app;\n")
    session.expect("root@app=> ")
    session.send("SELECT id, body FROM notes ORDER BY id;\n")
    table = session.expect("(2 rows)")
    assert " id | body\n" in table and "----+-------\n" in table, table
    assert "  1 | first\n" in table and " 22 | NULL\n" in table, table
    session.expect("Time: ")
    session.send("SELECT nope FROM notes;\n")  # an error: shown, and the shell goes on
    session.expect("ERROR ")
    session.expect("root@app=> ")
    session.send("SELECT 'half a statement',\n")
    session.expect("-> ")
    session.send("\x03")  # Ctrl-C: the pending statement is dropped, the shell stays
    session.expect("^C")
    session.expect("root@app=> ")
    session.send("\\d notes\n")
    described = session.expect("(4 rows)")
    assert "column_name" in described and " body " in described, described
    session.send("\x10\x10\x10\n")  # Ctrl-P three times: back to the SELECT, run it again
    session.expect("(2 rows)")
    session.send("\\q\n")
    assert session.wait() == 0


def _second_session(session: PtySession) -> None:
    # The stored token is used (no password prompt); the history file is loaded.
    session.expect(PROMPT)
    session.send("\x10\n")  # the last entry of the previous session: \q
    assert session.wait() == 0
    assert "Password" not in session.screen


async def test_sql_shell__interactive_session_through_a_pty(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text(FAST_BCRYPT)
    home = tmp_path / "home"
    async with running_server(tmp_path, KALAMDB_ROOT_PASSWORD=ROOT_PASSWORD) as server:
        for step in (_first_session, _second_session):
            session = PtySession(home, "sql", "--url", server.base_url)
            try:
                await trio.to_thread.run_sync(step, session)
            finally:
                session.close()
    history = (home / "state" / "sluice" / "history").read_text().splitlines()
    assert history[:3] == ["CREATE NAMESPACE app;",
                           "CREATE TABLE app.notes (id BIGINT PRIMARY KEY,\\nbody TEXT) WITH "
                           "(TYPE='USER');",
                           "INSERT INTO app.notes (id, body) VALUES (1, 'first'), (22, NULL);"]
    # One line per entry: newlines and backslashes escaped, so `\q` is stored as `\\q`.
    assert history[-4:] == ["\\\\d notes", "SELECT id, body FROM notes ORDER BY id;", "\\\\q",
                            "\\\\q"]


def _interactive_setup(session: PtySession) -> None:
    session.expect("DBA user name [dba]: ")
    session.send("ops\n")
    session.expect("DBA e-mail (optional): ")
    session.send("\n")
    session.expect("password for ops: ")
    session.send("ops-secret-1\n")
    session.expect("password for ops (again): ")
    session.send("typo\n")  # a mismatch asks again
    session.expect("the two entries differ; try again")
    session.expect("password for ops: ")
    session.send("ops-secret-1\n")
    session.expect("password for ops (again): ")
    session.send("ops-secret-1\n")
    session.expect("root password: ")
    session.send("root-secret-1\n")
    session.expect("root password (again): ")
    session.send("root-secret-1\n")
    session.expect("next: sluice sql --url")
    assert session.wait() == 0
    assert "secret" not in session.screen  # passwords are not echoed


async def test_sql_shell__setup_prompts_through_a_pty(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text(FAST_BCRYPT)
    home = tmp_path / "home"
    async with running_server(tmp_path) as server:
        session = PtySession(home, "setup", "--url", server.base_url)
        try:
            await trio.to_thread.run_sync(_interactive_setup, session)
        finally:
            session.close()
        run = await sluice(home, "sql", "--url", server.base_url, "--user", "ops", "-c",
                           "SELECT 1 AS one", SLUICE_PASSWORD="ops-secret-1")
        assert run.code == 0, run.err
