"""`sluice sql -c/-f`, `sluice setup` and the token store, run as subprocesses against a real
server (tests/api/harness.py) that logs in with a real password (KALAMDB_ROOT_PASSWORD)."""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

from tests.api.harness import running_server
from tests.tools.client_harness import FAST_BCRYPT, ROOT_PASSWORD, sluice

SETUP = ("CREATE NAMESPACE shop; "
         "CREATE TABLE shop.items (id BIGINT PRIMARY KEY, name TEXT, at TIMESTAMP) "
         "WITH (TYPE='SHARED'); "
         "INSERT INTO shop.items (id, name, at) VALUES "
         "(1, 'apple', 1700000000000000), (20, NULL, NULL), (300, '日本', 0);")
SELECT = "SELECT id, name, at FROM shop.items ORDER BY id"


async def test_sql_client__c_and_f__each_format_and_exit_codes(tmp_path: Path) -> None:
    # One server; each run is a fresh `sluice sql` process sharing one token store.
    (tmp_path / "server.toml").write_text(FAST_BCRYPT)
    home = tmp_path / "home"
    async with running_server(tmp_path, KALAMDB_ROOT_PASSWORD=ROOT_PASSWORD) as server:
        async def sql(*args: str, stdin: bytes = b"", **env: str):
            env.setdefault("SLUICE_PASSWORD", ROOT_PASSWORD)
            return await sluice(home, "sql", "--url", server.base_url, *args, stdin=stdin,
                                **env)

        run = await sql("-c", SETUP)
        assert run.code == 0, run.err
        assert "Namespace 'shop' created" in run.out and "Inserted 3 row(s)" in run.out
        run = await sql("-c", SELECT)
        assert run.out.splitlines() == [
            " id  | name  | at",
            "-----+-------+----------------------",
            "   1 | apple | 2023-11-14T22:13:20Z",
            "  20 | NULL  | NULL",
            " 300 | 日本  | 1970-01-01T00:00:00Z",
            "(3 rows)",
            ""], run.out
        run = await sql("-c", SELECT, "--format", "csv")
        assert list(csv.reader(io.StringIO(run.out))) == [
            ["id", "name", "at"], ["1", "apple", "2023-11-14T22:13:20Z"], ["20", "", ""],
            ["300", "日本", "1970-01-01T00:00:00Z"]]
        run = await sql("-c", SELECT, "--format", "json")
        envelope = json.loads(run.out)
        assert envelope["status"] == "success" and isinstance(envelope["took"], float)
        assert envelope["results"][0]["rows"][0] == ["1", "apple", 1_700_000_000_000_000]
        run = await sql("-c", SELECT, "--format", "ndjson")
        assert [json.loads(line) for line in run.out.splitlines()][1] == {
            "id": "20", "name": None, "at": None}
        await _check_scripts(tmp_path, sql)
        await _check_exit_codes(server.base_url, home, sql)
        await _check_token_store(home, sql)


async def _check_scripts(tmp_path: Path, sql) -> None:
    # -f: USE moves the client's namespace; statements and backslash commands in order.
    script = tmp_path / "script.sql"
    script.write_text("-- a script\nUSE shop;\nSELECT name\n  FROM items\n  WHERE id = 1;\n"
                      "\\dt shop\n\\d items\n\\timing on\nSELECT 'a;b' AS s\n")
    run = await sql("-f", str(script))
    assert run.code == 0, run.err
    assert "Namespace switched to 'shop'" in run.out and " apple\n" in run.out
    assert " shop         | items" in run.out  # \dt
    assert "column_name" in run.out and " at          |" in run.out  # \d items
    assert " a;b\n" in run.out and "Time: " in run.out and "Timing is on." in run.err
    # The first failing statement stops the script with exit 1; the rest does not run.
    script.write_text("SELECT 1;\nSELEC oops;\nCREATE NAMESPACE never;\n")
    run = await sql("-f", str(script), "--format", "csv")
    assert run.code == 1 and "ERROR INVALID_SQL:" in run.err, run
    run = await sql("-f", "-", "--format", "csv", stdin=b"SHOW NAMESPACES")
    assert run.code == 0 and "never" not in run.out and "shop" in run.out
    run = await sql("-n", "shop", "-c", "SELECT id FROM items WHERE name IS NULL",
                    "--format", "csv")
    assert run.code == 0 and run.out.splitlines() == ["id", "20"], run  # --namespace
    run = await sql("-c", "SELECT * FROM shop.missing")
    assert run.code == 1 and "ERROR TABLE_NOT_FOUND:" in run.err
    run = await sql("-c", "\\nonsense")
    assert run.code == 1 and "unknown command \\nonsense" in run.err


async def _check_exit_codes(url: str, home: Path, sql) -> None:
    run = await sql("-c", "SELECT 1", "--no-store", SLUICE_PASSWORD="wrong-password")
    assert run.code == 6 and "refused" in run.err, run
    run = await sql("-c", "SELECT 1", "--no-store", SLUICE_PASSWORD="")
    assert run.code == 6
    run = await sluice(home, "sql", "--url", "http://127.0.0.1:9", "-c", "SELECT 1",
                       SLUICE_PASSWORD=ROOT_PASSWORD)
    assert run.code == 5 and "cannot reach the server" in run.err, run
    run = await sql("-c", "SELECT 1", "--format", "xml")
    assert run.code == 64
    run = await sql("-c", "SELECT 1", "--token", "not-a-jwt")
    assert run.code == 6 and "token" in run.err


async def _check_token_store(home: Path, sql) -> None:
    # The login of the first run was stored 0600 and is reused without a password; an
    # expired access token is refreshed with the refresh token and stored again.
    path = home / "config" / "sluice" / "tokens.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    entries = json.loads(path.read_text())
    assert list(entries) == [next(iter(entries))] and next(iter(entries)).startswith("root@")
    run = await sql("-c", "SELECT 1 AS one", SLUICE_PASSWORD="")
    assert run.code == 0, run.err
    entry = next(iter(entries.values()))
    entry["expires_at"] = 0
    stale = entry["access_token"]
    path.write_text(json.dumps(entries))
    run = await sql("-c", "SELECT 1 AS one", SLUICE_PASSWORD="")
    assert run.code == 0, run.err
    fresh = next(iter(json.loads(path.read_text()).values()))
    assert fresh["expires_at"] > 0 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert fresh["refresh_token"] and fresh["access_token"] != "" and stale
    # A token the server rejects (not expired on the client's clock) is replaced too.
    fresh["access_token"] = "garbage"
    path.write_text(json.dumps({next(iter(entries)): fresh}))
    run = await sql("-c", "SELECT 1 AS one", SLUICE_PASSWORD="")
    assert run.code == 0, run.err
    assert next(iter(json.loads(path.read_text()).values()))["access_token"] != "garbage"


async def test_sql_client__setup__bootstraps_then_says_already_done(tmp_path: Path) -> None:
    # A server without a root password: setup refuses a weak password (exit 1), then sets
    # root and a DBA; the DBA can log in; a second setup is a no-op that says so.
    (tmp_path / "server.toml").write_text(FAST_BCRYPT)
    home = tmp_path / "home"
    async with running_server(tmp_path) as server:
        url = server.base_url
        run = await sluice(home, "setup", "--url", url, "--user", "ops",
                           SLUICE_ROOT_PASSWORD="password", SLUICE_DBA_PASSWORD="ops-secret-1")
        assert run.code == 1 and "weak_password" in run.err, run
        run = await sluice(home, "setup", "--url", url, "--user", "ops")
        assert run.code == 64 and "SLUICE_" in run.err  # no terminal, no variables
        run = await sluice(home, "setup", "--url", url, "--user", "ops", "--email", "o@x.io",
                           SLUICE_ROOT_PASSWORD="root-secret-1",
                           SLUICE_DBA_PASSWORD="ops-secret-1")
        assert run.code == 0, run.err
        assert "sluice sql --url" in run.out
        run = await sluice(home, "sql", "--url", url, "--user", "ops", "-c",
                           "SELECT CURRENT_USER() AS me", "--format", "csv",
                           SLUICE_PASSWORD="ops-secret-1")
        assert run.code == 0 and run.out.splitlines() == ["me", "ops"], run
        run = await sluice(home, "setup", "--url", url)
        assert run.code == 0 and "already set up" in run.out
