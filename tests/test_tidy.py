"""Style rules enforced by walking the project's source (AST, no imports executed).

- import direction: api -> engine -> wal, never backwards; wal uses only the standard
  library, trio, crc32c and zstandard; tools use wal (and engine.events for decoding); the
  client commands in tools/ import none of wal, engine, api
- only wal/_io.py calls os.write / os.pwrite / os.fsync / os.fdatasync / os.rename /
  os.replace / os.unlink / os.remove inside wal/
- no time.time() in wal/ or engine/ (use the injected clock), no asyncio, no print(
- functions stay under 70 lines (a ratchet: the allow-list may only shrink)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("wal", "engine", "api", "tools")
THIRD_PARTY_ALLOWED = {
    "wal": {"trio", "crc32c", "zstandard"},
    "engine": {"trio", "sqlglot", "pyarrow", "datafusion", "wal", "crc32c", "bcrypt"},
    "api": {"trio", "quart", "quart_trio", "hypercorn", "jwt", "bcrypt", "engine", "wal",
            "werkzeug"},
    # `sluice wal init` runs open_wal under trio.run; `sluice ingest` reads Arrow files;
    # `sluice subscribe` speaks WebSocket through wsproto (a dependency of hypercorn)
    "tools": {"trio", "wal", "engine", "pyarrow", "wsproto"},
}
# The client commands (`sluice sql`, `setup`, `ingest`, `consume`, `subscribe`) talk to a
# server over HTTP (and WebSocket) only: they import neither the engine, nor the server, nor the log.
CLIENT_MODULES = ("tools/client.py", "tools/connect.py", "tools/render.py",
                  "tools/statements.py", "tools/sql_shell.py", "tools/setup_cmd.py",
                  "tools/ingest.py", "tools/consume.py", "tools/subscribe.py", "tools/ws.py")
PROJECT = set(PACKAGES)
IO_CALLS = {"write", "pwrite", "fsync", "fdatasync", "rename", "replace", "unlink", "remove"}
FUNCTION_LINES_MAX = 70
FUNCTION_LINES_ALLOWED: dict[str, int] = {}  # "path::name" -> current length (ratchet)


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _imports(tree: ast.AST) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
    return found


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_tidy__imports_follow_the_layer_direction(path: Path) -> None:
    # Every absolute import must be stdlib or in the package's allow-list.
    package = path.relative_to(ROOT).parts[0]
    for module, line in _imports(ast.parse(path.read_text())):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names and top != "asyncio":
            continue
        assert top != "asyncio", f"{path}:{line}: asyncio is banned (trio only)"
        assert top == package or top in THIRD_PARTY_ALLOWED[package], (
            f"{path}:{line}: {package}/ may not import {module}")
        if package == "tools" and top == "engine":
            assert module.startswith("engine.events"), f"{path}:{line}: tools use engine.events only"


@pytest.mark.parametrize("name", CLIENT_MODULES)
def test_tidy__client_modules_speak_http_only(name: str) -> None:
    # The sql/setup/ingest/consume client must work against any server, so no server code.
    path = ROOT / name
    for module, line in _imports(ast.parse(path.read_text())):
        top = module.split(".")[0]
        assert top not in ("engine", "api", "wal"), f"{name}:{line}: the client imports {module}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_tidy__banned_calls(path: Path) -> None:
    # os I/O calls only in wal/_io.py (within wal/), no time.time() in wal/engine, no print(.
    rel = path.relative_to(ROOT)
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name):
            assert func.id != "print", f"{rel}:{node.lineno}: print( is banned; write to a stream"
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner, name = func.value.id, func.attr
            if owner == "os" and name in IO_CALLS and rel.parts[0] == "wal":
                assert rel == Path("wal/_io.py"), f"{rel}:{node.lineno}: os.{name} outside wal/_io.py"
            if (owner == "time" and name in ("time", "time_ns") and rel.parts[0] in ("wal", "engine")
                    and rel != Path("engine/clock.py")):
                raise AssertionError(f"{rel}:{node.lineno}: time.time() — use the injected clock")


def test_tidy__functions_stay_short() -> None:
    # Ratchet: no function grows past FUNCTION_LINES_MAX unless allow-listed at its length.
    too_long = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                key = f"{path.relative_to(ROOT)}::{node.name}"
                if length > FUNCTION_LINES_ALLOWED.get(key, FUNCTION_LINES_MAX):
                    too_long[key] = length
    assert not too_long, f"functions over {FUNCTION_LINES_MAX} lines: {too_long}"


def test_tidy__only_one_wal_module_touches_the_os_write_path() -> None:
    # The seam must exist and be the single writer of files (tests plug in CrashFS there).
    users = set()
    for path in (ROOT / "wal").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "os" and node.attr in IO_CALLS):
                users.add(path.name)
    assert users == {"_io.py"}
