"""The SQLite database in the data dir: one connection, schema creation, serialized writes."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL,
    allowed_bindings TEXT,
    allowed_models TEXT,
    rpm INTEGER,
    tpm INTEGER,
    max_concurrent INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    key_id TEXT,
    client TEXT,
    method TEXT,
    path TEXT,
    status INTEGER,
    request_id TEXT,
    instance TEXT,
    model TEXT,
    generation_type TEXT,
    duration_ms REAL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    detail TEXT
);
DROP INDEX IF EXISTS audit_at;
"""


CHECKPOINT_EVERY_S = 10.0


class Store:
    """One SQLite connection in WAL mode; writes are serialized and committed before returning.

    A write is a WAL append without fsync (synchronous=NORMAL): ~40 µs, cheaper on the event
    loop than a hop to a worker thread (~130 µs), and it survives a crash of the process. The
    fsyncs happen in checkpoints, which `checkpoints()` runs in a worker thread on its own
    connection (automatic checkpoints, which would run inside a write, are off).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._db.execute("PRAGMA journal_size_limit=67108864")  # the WAL shrinks after checkpoints
        self._db.executescript(SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('created_at', ?)", (str(time.time()),)
        )
        self._db.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run a read query (fast, indexed lookups only: it runs on the calling thread)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def write_now(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement and commit it; return the row count."""
        with self._lock:
            return self._db.execute(sql, params).rowcount

    def insert_now(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one INSERT and commit it; return the new row's id."""
        with self._lock:
            return self._db.execute(sql, params).lastrowid or 0

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One committed write (a WAL append; the disk is synced by the checkpoints)."""
        return self.write_now(sql, params)

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and sync it (PASSIVE: writers never wait)."""
        db = sqlite3.connect(self.path, timeout=5.0)
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    async def checkpoints(self, every_s: float = CHECKPOINT_EVERY_S) -> None:
        """Checkpoint in a worker thread every `every_s` until cancelled (and once at the end)."""
        try:
            while True:
                await asyncio.sleep(every_s)
                await asyncio.to_thread(self.checkpoint)
        finally:
            await asyncio.to_thread(self.checkpoint)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()
