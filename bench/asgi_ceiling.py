"""The bare ASGI ceiling of the HTTP benchmark: a minimal app on hypercorn's trio worker.

Run: ``python -m bench.asgi_ceiling --port PORT`` (``bench/http_api.py`` starts it). Every
request, whatever its path and method, has its body read, parsed as JSON (stdlib ``json``,
as Sluice's hot routes do) and answered ``200 {"status":"success","row_count":1}``; a body
that is not JSON gets a 400, so the load generator's 2xx check still means something. No
routing, no authentication, no engine: what remains is the cost of hypercorn's trio worker,
h11 and one JSON round trip, i.e. the ceiling any Sluice route on the same server can reach.

The server settings are Sluice's own (``api.serve.hypercorn_config`` and ``refuse_h2c``), so
the comparison differs only in the app. When the socket listens, one line goes to stderr:
``ceiling: serving on http://127.0.0.1:PORT``. SIGINT/SIGTERM stop it (exit 0).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

import trio
from hypercorn.trio import serve

from api.config import ServerConfig
from api.serve import hypercorn_config, refuse_h2c

REPLY = json.dumps({"status": "success", "row_count": 1}, separators=(",", ":")).encode()
HEADERS = [(b"content-type", b"application/json"),
           (b"content-length", str(len(REPLY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The whole ceiling app (ASGI 3): lifespan acknowledged, websockets refused."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            done = message["type"] == "lifespan.shutdown"
            await send({"type": message["type"] + ".complete"})
            if done:
                return
    if scope["type"] != "http":
        await send({"type": "websocket.close", "code": 1000})
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    try:
        json.loads(b"".join(chunks))
    except ValueError:
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": REPLY})


async def _serve(port: int) -> None:
    config = ServerConfig()
    config.server.host, config.server.port = "127.0.0.1", port
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    shutdown.set()
                    return
        nursery.start_soon(watch_signals)
        binds = await nursery.start(
            lambda task_status: serve(app, hypercorn_config(config),  # type: ignore[arg-type]
                                      shutdown_trigger=shutdown.wait, task_status=task_status))
        sys.stderr.write(f"ceiling: serving on {binds[0]}\n")
        sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.asgi_ceiling",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = parser.parse_args(argv)
    refuse_h2c()
    trio.run(_serve, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
