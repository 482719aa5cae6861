"""The SQLite store: one connection in WAL mode in the data dir; writes serialized and
committed before returning."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailable, ConfigError
from .base import Row

log = logging.getLogger(__name__)
CHECKPOINT_EVERY_S = 10.0
#: SQLite's primary result codes that mean the file cannot be used now (retry), not a bug.
UNAVAILABLE = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED,
     sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN}
)  # fmt: skip


def statements(script: str) -> list[str]:
    """The complete SQL statements of `script`, in order."""
    found, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            found.append(pending.strip())
            pending = ""
    if pending.strip():
        found.append(pending.strip())
    return found


class SqliteStore:
    """One SQLite connection in WAL mode; writes are serialized and committed before returning.

    A write is a WAL append without fsync (synchronous=NORMAL): ~40 µs, cheaper on the event
    loop than a hop to a worker thread (~130 µs), and it survives a crash of the process. The
    fsyncs happen in checkpoints, which `maintain()` runs in a worker thread on its own
    connection (automatic checkpoints, which would run inside a write, are off).
    """

    dialect = "sqlite"

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

    @classmethod
    def open(cls, path: str | Path) -> SqliteStore:
        """Open (or create) the database file at `path` (ConfigError when it cannot be: a
        folder that does not exist or is not writable, a file that is not a database)."""
        try:
            return cls(Path(path))
        except sqlite3.Error as exc:
            raise ConfigError(
                f"cannot open the database {path}: {exc}; check that its folder exists, that"
                " the server's user may write there, and that the file is a lollms database"
            ) from exc

    @contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """The connection, alone; a full disk, a read-only file or a lock held past the busy
        timeout is a 503 naming the database (the request may be retried), not a 500."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in UNAVAILABLE:  # a wrong statement: a bug
                    raise
                raise BackendUnavailable(
                    f"the database {self.path.name} cannot be used ({exc})", retry_after=1
                ) from exc

    def query_now(self, sql: str, params: Any = ()) -> list[Row]:
        """`query` for synchronous code (tests, the backup command)."""
        with self._using() as db:
            return db.execute(sql, params).fetchall()

    async def query(self, sql: str, params: Any = ()) -> list[Row]:
        """The rows of one read query (fast, indexed lookups only: it runs on the loop)."""
        return self.query_now(sql, params)

    async def execute(self, sql: str, params: Any = ()) -> int:
        """One committed write (a WAL append; the disk is synced by the checkpoints)."""
        with self._using() as db:
            return db.execute(sql, params).rowcount

    async def insert(self, sql: str, params: Any = ()) -> int:
        """Run one INSERT and commit it; return the new row's id."""
        with self._using() as db:
            return db.execute(sql, params).lastrowid or 0

    async def revision(self) -> int:
        """`meta.schema_version`, 0 for an empty database."""
        with self._lock:
            return _revision(self._db)

    async def migrate(self, sql: str, expected: int, target: int, record: str | None) -> bool:
        """Run one migration step in one transaction (SQLite's DDL is transactional)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")  # the write lock: a second process waits here
            try:
                if _revision(db) != expected:
                    db.execute("ROLLBACK")
                    return False
                for statement in statements(sql):
                    db.execute(statement)
                db.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (str(target),),
                )
                if record is not None:
                    db.execute(
                        "INSERT INTO schema_history(revision, action, at)"
                        " VALUES (?, ?, unixepoch())",
                        (target, record),
                    )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return True

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and sync it (PASSIVE: writers never wait)."""
        db = sqlite3.connect(self.path, timeout=5.0)
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    async def maintain(self, every_s: float = CHECKPOINT_EVERY_S) -> None:
        """Checkpoint in a worker thread every `every_s` until cancelled (and once at the end);
        a checkpoint that fails (a full disk) is logged and tried again at the next interval."""
        try:
            while True:
                await asyncio.sleep(every_s)
                await self._checkpoint_logged()
        finally:
            await self._checkpoint_logged()

    async def _checkpoint_logged(self) -> None:
        try:
            await asyncio.to_thread(self.checkpoint)
        except sqlite3.Error as exc:
            log.warning("checkpoint of %s failed (%s); the WAL grows until one succeeds",
                        self.path, exc)  # fmt: skip

    async def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()


def _revision(db: sqlite3.Connection) -> int:
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchall():
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0
