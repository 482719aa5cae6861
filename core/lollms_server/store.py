"""The SQLite database in the data dir: one connection, schema creation, serialized writes."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
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
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
"""


class Store:
    """One SQLite connection in WAL mode; writes are serialized and committed before returning."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
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

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """`write_now` in a worker thread, so the event loop never waits on the disk."""
        return await asyncio.to_thread(self.write_now, sql, params)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()
