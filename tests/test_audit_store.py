"""The SQLite audit table: retention purge by id range, WAL settings, migration of older
databases."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from lollms_server.security import audit as audit_module
from lollms_server.security.audit import AuditLog
from lollms_server.storage import schema
from lollms_server.storage.sqlite import SqliteStore


async def opened(path: Path) -> SqliteStore:
    store = SqliteStore.open(path)
    await schema.upgrade(store)
    return store


@pytest.mark.parametrize(
    ("ages", "expected"),
    [([], 0), ([100.0] * 50 + [1.0] * 30, 50), ([200.0] * 7, 7), ([5.0] * 9, 0), ([91.0, 1.0], 1)],
)
async def test_purge_deletes_exactly_the_expired(
    tmp_path: Path, ages: list[float], expected: int
) -> None:
    store = await opened(tmp_path / "db.sqlite")
    now = time.time()
    for age in ages:
        await store.execute("INSERT INTO audit(at, event) VALUES (?, 'test')", (now - age * 86400,))
    audit = AuditLog(store, retention_days=90)
    assert await audit.purge() == expected
    left = (await store.query("SELECT count(*) AS n FROM audit"))[0]["n"]
    assert left == len(ages) - expected
    assert await audit.purge() == 0
    await store.close()


async def test_a_big_backlog_is_purged_in_short_statements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each DELETE covers at most PURGE_BATCH ids, so none outlasts a store's statement timeout."""
    monkeypatch.setattr(audit_module, "PURGE_BATCH", 7)
    store = await opened(tmp_path / "db.sqlite")
    now = time.time()
    for age in [100.0] * 50 + [1.0] * 3:
        await store.execute("INSERT INTO audit(at, event) VALUES (?, 'test')", (now - age * 86400,))
    deletes: list[str] = []
    execute = store.execute

    async def counted(sql: str, params: Any = ()) -> int:
        deletes.append(sql)
        return await execute(sql, params)

    monkeypatch.setattr(store, "execute", counted)
    assert await AuditLog(store, retention_days=90).purge() == 50
    assert len(deletes) == 8  # ceil(50 / 7)
    assert (await store.query("SELECT count(*) AS n FROM audit"))[0]["n"] == 3
    await store.close()


async def test_an_older_database_loses_its_at_index(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, "
               "event TEXT NOT NULL)")  # fmt: skip
    db.execute("CREATE INDEX audit_at ON audit(at)")
    db.commit()
    db.close()
    store = await opened(path)
    indexes = await store.query("SELECT name FROM sqlite_master WHERE type = 'index'")
    assert "audit_at" not in [row["name"] for row in indexes]
    assert (await store.query("PRAGMA journal_mode"))[0][0] == "wal"
    assert await store.revision() == schema.head("sqlite")
    await store.close()
