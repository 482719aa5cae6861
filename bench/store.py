"""The store's two hot operations on each engine: a key lookup (`KeyStore.verify`, what every
request with a key pays) and an audit insert (`AuditLog.insert`, committed before the response),
on SQLite (the data dir's file, WAL) and on PostgreSQL (asyncpg, a local server started like the
tests start it, loopback TCP). Sequential (c=1) latency and 16-way concurrent throughput.
Prints Markdown; `--write` updates the `<!-- store -->` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from common import machine, pct, write_section

from lollms_server.security.api_keys import KeyStore
from lollms_server.security.audit import AuditLog
from lollms_server.storage import Store, schema
from lollms_server.storage.postgres import PostgresStore
from lollms_server.storage.sqlite import SqliteStore
from lollms_server.testing.postgres import postgres_server

MARKER = "<!-- store -->"
CONCURRENCY = 16


async def timed(operation: Callable[[], Awaitable[object]], count: int) -> list[float]:
    """Seconds of each of `count` sequential calls."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await operation()
        times.append(time.perf_counter() - started)
    return times


async def throughput(operation: Callable[[], Awaitable[object]], count: int) -> float:
    """Operations per second with CONCURRENCY callers sharing `count` calls."""

    async def caller() -> None:
        for _ in range(count // CONCURRENCY):
            await operation()

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return count / (time.perf_counter() - started)


async def measure(name: str, store: Store, count: int) -> list[str]:
    """Table rows of one engine."""
    await schema.upgrade(store)
    keys, audit = KeyStore(store), AuditLog(store)
    key, _ = await keys.create("bench", "user")

    async def lookup() -> object:
        return await keys.verify(key)

    async def insert() -> object:
        return await audit.insert("generation", key_id="bench", request_id="r", status=200)

    rows = []
    for label, operation in (("key lookup (verify)", lookup), ("audit insert", insert)):
        await timed(operation, count // 10)  # warm up
        times = await timed(operation, count)
        rate = await throughput(operation, count)
        rows.append(
            f"| {name} | {label} | {pct(times, 50):.3f} | {pct(times, 95):.3f} | "
            f"{pct(times, 99):.3f} | {rate:,.0f} |"
        )
    await store.close()
    return rows


async def drivers(url: str, count: int) -> list[str]:
    """The same two statements through one connection of each driver (c=1), for the choice."""
    import asyncpg

    lookup = "SELECT * FROM api_keys WHERE id = {}"
    insert = "INSERT INTO audit(at, event, request_id) VALUES ({}, 'generation', 'r')"
    rows = []
    connection = await asyncpg.connect(url)
    await connection.execute(
        "INSERT INTO api_keys(id, name, role, salt, hash, created_at)"
        " VALUES ('driverbench1', 'd', 'user', '', '', 0)"
    )
    operations: dict[str, Callable[[], Awaitable[object]]] = {
        "key lookup": lambda: connection.fetch(lookup.format("$1"), "driverbench1"),
        "audit insert": lambda: connection.execute(insert.format("$1"), 1.0),
    }
    rows += await _driver_rows("asyncpg", operations, count)
    await connection.close()
    try:
        import psycopg
    except ImportError:
        return rows
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as other:
        operations = {
            "key lookup": lambda: other.execute(lookup.format("%s"), ("driverbench1",)),
            "audit insert": lambda: other.execute(insert.format("%s"), (1.0,)),
        }
        rows += await _driver_rows("psycopg 3 (async)", operations, count)
    return rows


async def _driver_rows(
    name: str, operations: dict[str, Callable[[], Awaitable[object]]], count: int
) -> list[str]:
    rows = []
    for label, operation in operations.items():
        await timed(operation, count // 10)
        times = await timed(operation, count)
        rows.append(f"| {name} | {label} | {pct(times, 50):.3f} | {pct(times, 95):.3f} |")
    return rows


async def main(count: int) -> str:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        rows += await measure("SQLite (WAL)", SqliteStore.open(Path(folder) / "b.sqlite"), count)
    with postgres_server() as server:
        url = server.create_database("bench")
        store = await PostgresStore.connect(url, pool_size=CONCURRENCY, timeout_s=10)
        rows += await measure("PostgreSQL 15 (asyncpg)", store, count)
        driver_rows = await drivers(url, count)
    header = (
        f"Run: {machine()}. {count} sequential calls per operation (c=1 columns), then "
        f"{count} shared by {CONCURRENCY} concurrent callers (ops/s).\n\n"
        "| store | operation | p50 ms | p95 ms | p99 ms | ops/s at c=16 |\n"
        "|---|---|---|---|---|---|"
    )
    compared = (
        "\nThe driver, the same statements through one connection (c=1, no pool), when psycopg 3 "
        "is installed:\n\n| driver | statement | p50 ms | p95 ms |\n|---|---|---|---|"
    )
    return "\n".join([header, *rows, compared, *driver_rows])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    text = asyncio.run(main(args.count))
    print(text)
    if args.write:
        write_section(MARKER, text, "Store: key lookup and audit insert (bench/store.py)")
