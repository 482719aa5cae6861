"""Schema migrations with real processes. The runbook's rehearsal (docs/operations.md,
"Upgrade and roll back"): a database of the previous release (revision 3) is upgraded with a
migration, served, rolled back to revision 3 and served again with the same keys, on SQLite and
on a real PostgreSQL. A SQLite file written by the previous release's code upgrades in place;
a database newer than the release is refused at start-up."""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lollms_server.testing.postgres import PostgresServer, postgres_server
from lollms_server.testing.process import SERVER_COMMAND, lollms_process, server_env

URL_VARIABLE = "TEST_LOLLMS_MIGRATION_URL"
ECHO = '[bindings.echo]\ntype = "echo"\n'
#: the schema the previous release (schema_version 3) created, as its store.py wrote it
RELEASE_3_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, salt BLOB NOT NULL,
    hash BLOB NOT NULL, created_at REAL NOT NULL, expires_at REAL, revoked_at REAL,
    allowed_bindings TEXT, allowed_models TEXT, rpm INTEGER, tpm INTEGER, max_concurrent INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, event TEXT NOT NULL, key_id TEXT, client TEXT,
    method TEXT, path TEXT, status INTEGER, request_id TEXT, instance TEXT, model TEXT,
    generation_type TEXT, duration_ms REAL, prompt_tokens INTEGER, completion_tokens INTEGER,
    detail TEXT
);
INSERT INTO meta(key, value) VALUES ('schema_version', '3');
"""


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`lollms-server --config <folder>/lollms.toml <args>` with that folder's data dir."""
    return subprocess.run(
        [*SERVER_COMMAND, "--config", str(folder / "lollms.toml"), *args],
        env=server_env(folder / "data"), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def ok(folder: Path, *args: str) -> str:
    """The output of a CLI command that must succeed."""
    done = cli(folder, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def status_with_key(url: str, key: str) -> int:
    """The status of a listing with `key`, sent as from another host (no local access)."""
    request = urllib.request.Request(
        f"{url}/api/v1/list_models", headers={"X-API-Key": key, "Host": "api.example"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            json.load(reply)
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def storage_config(dialect: str, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The `[storage]` table of the rehearsal: migrations only by `db upgrade`."""
    if dialect == "sqlite":
        return "[storage]\nmigrate_on_start = false\n"
    monkeypatch.setenv(URL_VARIABLE, postgres.create_database(f"m_{uuid.uuid4().hex[:8]}"))
    return f'[storage]\nmigrate_on_start = false\nurl_env = "{URL_VARIABLE}"\n'


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_upgrade_with_a_migration_then_roll_back_serves_the_same_keys(
    dialect: str, tmp_path: Path, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ECHO + storage_config(dialect, postgres, monkeypatch)
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "lollms.toml").write_text(f'[server]\nhost = "127.0.0.1"\n{config}')
    # the previous release's database: revision 3, and a key made on it
    assert "applied 0003 baseline" in ok(folder, "db", "upgrade", "3")
    before = ok(folder, "keys", "create", "--name", "before").strip()
    assert ok(folder, "db", "current").startswith("3 (this release: 4)")
    # upgrade: the new release's migration
    assert "applied 0004 schema_history" in ok(folder, "db", "upgrade")
    assert ok(folder, "db", "current").startswith("4 ")
    with lollms_process(folder, config) as server:
        assert status_with_key(server.url, before) == 200
        during = ok(folder, "keys", "create", "--name", "during").strip()
        assert status_with_key(server.url, during) == 200
    # roll back to the previous release's revision and serve again
    assert "undid 0004 schema_history" in ok(folder, "db", "downgrade", "3")
    assert "0004 schema_history" in ok(folder, "db", "history")
    assert ok(folder, "db", "current").startswith("3 ")
    with lollms_process(folder, config) as server:
        assert status_with_key(server.url, before) == 200
        assert status_with_key(server.url, during) == 200
        assert status_with_key(server.url, before[:-2] + "xx") == 401
    assert ok(folder, "db", "current").startswith("3 ")  # serving did not migrate it
    # and forward again: the history says what happened
    ok(folder, "db", "upgrade")
    assert "upgrade schema_history -> 4" in ok(folder, "db", "history")


def test_a_database_of_the_previous_release_upgrades_in_place(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    old = sqlite3.connect(data / "lollms.sqlite")
    old.executescript(RELEASE_3_SCHEMA)
    key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_bytes(16)
    old.execute(
        "INSERT INTO api_keys(id, name, role, salt, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (key_id, "made by 0.1", "user", salt, hashlib.sha256(salt + secret.encode()).digest(),
         time.time()),
    )  # fmt: skip
    old.execute(
        "INSERT INTO audit(at, event, key_id) VALUES (?, 'key_created', ?)", (time.time(), key_id)
    )
    old.commit()
    old.close()
    key = f"lollms_{key_id}_{secret}"
    with lollms_process(tmp_path, ECHO) as server:  # migrate_on_start = true: the default
        assert status_with_key(server.url, key) == 200
    assert ok(tmp_path, "db", "current").startswith("4 (this release: 4)")
    upgraded = sqlite3.connect(data / "lollms.sqlite")
    kept = upgraded.execute("SELECT count(*) FROM audit WHERE event = 'key_created'").fetchone()
    assert kept == (1,)  # the old audit rows are still there
    assert upgraded.execute("SELECT revision, action FROM schema_history").fetchall() == [
        (4, "upgrade schema_history")
    ]
    upgraded.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    upgraded.commit()
    upgraded.close()
    refused = cli(tmp_path, "serve")
    assert refused.returncode == 2 and "newer than this release" in refused.stderr, refused
    assert "Traceback" not in refused.stderr
