"""The SQLite database in the data dir: schema creation and the generation log."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS generations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    at REAL NOT NULL,
    face TEXT NOT NULL,
    instance TEXT,
    model TEXT,
    generation_type TEXT,
    status INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER
);
"""


class Store:
    """One SQLite connection in WAL mode; writes run in a worker thread, one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta(key, value)"
            " VALUES ('schema_version', ?), ('created_at', ?)",
            (str(SCHEMA_VERSION), str(time.time())),
        )

    async def log_generation(
        self,
        *,
        request_id: str,
        face: str,
        instance: str | None,
        model: str | None,
        generation_type: str | None,
        status: int,
        duration_ms: float,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        """Record one generation's metadata (never its content)."""
        row = (
            request_id,
            time.time(),
            face,
            instance,
            model,
            generation_type,
            status,
            duration_ms,
            prompt_tokens,
            completion_tokens,
        )
        async with self._lock:
            await asyncio.to_thread(
                self._db.execute,
                "INSERT INTO generations(request_id, at, face, instance, model, generation_type,"
                " status, duration_ms, prompt_tokens, completion_tokens)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

    def count_generations(self) -> int:
        """How many generations were logged."""
        return int(self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0])

    def close(self) -> None:
        """Close the connection."""
        self._db.close()
