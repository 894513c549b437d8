"""In-process bulk-ingest throughput: 10,000-row NDJSON and Arrow IPC bodies through
``engine.ingest_body`` (decode + type conversion + PK check + one durable WAL event each,
``fsync=always``), into a SHARED and a USER table. No HTTP: the HTTP benchmark is
``bench/http_api.py``.

Run: ``.venv/bin/python -m bench.ingest_inprocess [--requests N]``. Prints rows/s and
ms/request per format and table type. The table is
``(id BIGINT PRIMARY KEY, title TEXT, price DOUBLE, qty INT, created TIMESTAMP DEFAULT NOW())``
and the bodies omit ``created`` (a default per request).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable

import pyarrow as pa
import trio

from engine import EngineConfig, Session, ingest_body, open_engine

ROOT = Session("root", "system")
ROWS = 10_000


def ndjson_body(start: int) -> bytes:
    return "".join(json.dumps({"id": i, "title": f"title {i}", "price": i * 0.5, "qty": i % 100})
                   + "\n" for i in range(start, start + ROWS)).encode()


def arrow_body(start: int) -> bytes:
    ids = list(range(start, start + ROWS))
    table = pa.table({"id": ids, "title": [f"title {i}" for i in ids],
                      "price": [i * 0.5 for i in ids],
                      "qty": pa.array([i % 100 for i in ids], pa.int32())})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


async def measure(body_format: str, make: Callable[[int], bytes], table_type: str,
                  requests: int) -> str:
    bodies = [make(k * ROWS) for k in range(requests)]
    with tempfile.TemporaryDirectory() as data_dir:
        async with open_engine(data_dir, EngineConfig(jobs_interval_seconds=3600)) as engine:
            await engine.execute(ROOT, f"CREATE NAMESPACE b; CREATE {table_type} TABLE b.t (id "
                                 "BIGINT PRIMARY KEY, title TEXT, price DOUBLE, qty INT, "
                                 "created TIMESTAMP DEFAULT NOW())")
            await ingest_body(engine, ROOT, "b", "t", make(-ROWS), body_format)  # warm-up
            started = time.perf_counter()
            for body in bodies:
                await ingest_body(engine, ROOT, "b", "t", body, body_format)
            elapsed = time.perf_counter() - started
    return (f"{body_format:6} {table_type:6}: {requests * ROWS / elapsed:>9,.0f} rows/s "
            f"({elapsed / requests * 1000:.1f} ms/request, body {len(bodies[0]) / 1e6:.2f} MB)")


async def main(requests: int) -> None:
    for table_type in ("SHARED", "USER"):
        for body_format, make in (("arrow", arrow_body), ("ndjson", ndjson_body)):
            line = await measure(body_format, make, table_type, requests)
            sys.stdout.write(line + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20, help="10,000-row requests per cell")
    trio.run(main, parser.parse_args().requests)
