"""The store contract: the SQLite store and the PostgreSQL store (a real server started by the
fixture) behave the same for keys, the audit log and migrations."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from lollms_server.config import parse_config
from lollms_server.config_show import effective_config
from lollms_server.errors import ConfigError, NotFound, Unauthorized
from lollms_server.security.api_keys import KeyStore
from lollms_server.security.audit import FIELD_CHARS, AuditLog
from lollms_server.storage import Store, database_url, describe, schema
from lollms_server.storage.postgres import PostgresStore
from lollms_server.storage.sqlite import SqliteStore
from lollms_server.testing.postgres import PostgresServer, postgres_server

DIALECTS = ("sqlite", "postgresql")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


async def open_empty(dialect: str, tmp_path: Path, postgres: PostgresServer) -> Store:
    """A store on a new, empty database of `dialect`."""
    if dialect == "sqlite":
        return SqliteStore.open(tmp_path / f"{uuid.uuid4().hex}.sqlite")
    url = postgres.create_database(f"contract_{uuid.uuid4().hex[:12]}")
    return await PostgresStore.connect(url, pool_size=4, timeout_s=10)


@pytest.fixture(params=DIALECTS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer
) -> AsyncIterator[Store]:
    opened = await open_empty(request.param, tmp_path, postgres)
    await schema.upgrade(opened)
    yield opened
    await opened.close()


async def test_an_empty_database_migrates_to_the_head(store: Store) -> None:
    assert await store.revision() == schema.head(store.dialect)
    assert await schema.upgrade(store) == []  # nothing left to apply
    assert (await store.query("SELECT count(*) AS n FROM api_keys"))[0]["n"] == 0


def test_both_dialects_know_the_same_revisions() -> None:
    revisions = [[m.revision for m in schema.migrations(d)] for d in DIALECTS]
    assert revisions[0] == revisions[1] and revisions[0][0] == schema.OLDEST_SUPPORTED


async def test_a_key_round_trips_and_verifies(store: Store) -> None:
    keys = KeyStore(store)
    plain, made = await keys.create(
        "ci", "user", allowed_models=["echo/echo"], allowed_bindings=["echo"], rpm=7, tpm=9
    )
    verified = await keys.verify(plain)
    assert verified == made == await keys.get(made.id)
    assert verified.allowed_models == frozenset({"echo/echo"}) and verified.rpm == 7
    assert isinstance(verified.created_at, float)
    with pytest.raises(Unauthorized):
        await keys.verify(plain[:-1] + ("A" if plain[-1] != "A" else "B"))
    with pytest.raises(NotFound):
        await keys.get("0123456789ab")


async def test_listing_is_newest_first_and_revoking_is_idempotent(store: Store) -> None:
    keys = KeyStore(store)
    first, first_record = await keys.create("first", "admin")
    await asyncio.sleep(0.01)
    _, second = await keys.create("second", "user")
    assert [k.name for k in await keys.list()] == ["second", "first"]
    revoked = await keys.revoke(first_record.id)
    assert revoked.status() == "revoked"
    assert (await keys.revoke(first_record.id)).revoked_at == revoked.revoked_at
    with pytest.raises(Unauthorized, match="revoked"):
        await keys.verify(first)
    assert await store.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        (time.time(), first_record.id),
    ) == 0  # fmt: skip
    expired, _ = await keys.create("old", "user", expires_at=time.time() - 1)
    with pytest.raises(Unauthorized, match="expired"):
        await keys.verify(expired)
    assert (await keys.get(second.id)).status() == "active"


async def test_audit_rows_are_ordered_filtered_and_capped(store: Store) -> None:
    audit = AuditLog(store)
    ids = [
        await audit.insert("generation", key_id=f"k{i % 2}", request_id=f"r{i}", status=200)
        for i in range(6)
    ]
    assert ids == sorted(ids) and len(set(ids)) == 6
    await audit.record("key_created", client="x" * 1000, detail={"new_key_id": "é✓", "n": 1})
    newest = await audit.query(limit=1)
    assert newest[0]["event"] == "key_created" and len(newest[0]["client"]) == FIELD_CHARS
    assert newest[0]["detail"] == {"new_key_id": "é✓", "n": 1}
    only_k1 = await audit.query(key_id="k1", event="generation")
    assert [e["request_id"] for e in only_k1] == ["r5", "r3", "r1"]
    older = await audit.query(before_id=ids[2])
    assert [e["id"] for e in older] == [ids[1], ids[0]]
    await audit.set_detail(ids[0], {"count": 3})
    assert (await audit.query(before_id=ids[1]))[0]["detail"] == {"count": 3}


async def test_purge_deletes_exactly_the_expired(store: Store) -> None:
    now = time.time()
    for age in [100.0] * 5 + [1.0] * 3:
        await store.execute("INSERT INTO audit(at, event) VALUES (?, 'test')", (now - age * 86400,))
    assert await AuditLog(store, retention_days=90).purge() == 5
    assert (await store.query("SELECT count(*) AS n FROM audit"))[0]["n"] == 3


async def test_auth_failures_share_one_row_with_a_count(store: Store) -> None:
    failures = AuditLog(store).failures
    await asyncio.gather(*(
        failures.record(
            client="203.0.113.9", status=401, reason="invalid API key", key_id=None,
            method="GET", path="/v1/models", user_agent="curl",
        )
        for _ in range(25)
    ))  # fmt: skip
    await failures.flush()
    rows = await store.query("SELECT detail FROM audit WHERE event = 'auth_failed'")
    assert len(rows) == 1 and json.loads(rows[0]["detail"])["count"] == 25


async def test_downgrade_keeps_the_keys_and_upgrade_records_history(store: Store) -> None:
    keys = KeyStore(store)
    plain, _ = await keys.create("kept", "user")
    undone = await schema.downgrade(store, schema.OLDEST_SUPPORTED)
    assert [m.revision for m in undone] == [schema.head(store.dialect)]
    assert await store.revision() == schema.OLDEST_SUPPORTED
    assert (await keys.verify(plain)).name == "kept"  # this release serves revision 3 too
    with pytest.raises(ConfigError, match="cannot downgrade"):
        await schema.downgrade(store, 1)
    await schema.upgrade(store)
    history = await store.query("SELECT revision, action FROM schema_history")
    assert [(r["revision"], r["action"]) for r in history] == [(4, "upgrade schema_history")]
    assert (await keys.verify(plain)).name == "kept"


async def test_a_database_newer_than_the_release_is_refused(store: Store) -> None:
    await store.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ConfigError, match="newer than this release"):
        await schema.prepare(store, migrate=True)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_replicas_migrating_at_once_apply_each_step_once(
    dialect: str, tmp_path: Path, postgres: PostgresServer
) -> None:
    first = await open_empty(dialect, tmp_path, postgres)
    if dialect == "sqlite":
        assert isinstance(first, SqliteStore)
        second: Store = SqliteStore.open(first.path)
    else:
        assert isinstance(first, PostgresStore)
        second = await PostgresStore.connect(postgres.url(first.where.rsplit("/", 1)[1]), 4, 10)
    applied = await asyncio.gather(schema.prepare(first, True), schema.prepare(second, True))
    assert applied == [schema.head(dialect)] * 2
    history = await first.query("SELECT revision FROM schema_history")
    assert [r["revision"] for r in history] == [4]  # one replica applied it, once
    await first.close()
    await second.close()


def test_storage_settings_mask_the_password_and_refuse_other_urls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = parse_config({"storage": {"url": "postgresql://lollms:s3cret@db:5432/lollms"}})
    assert "s3cret" not in json.dumps(effective_config(config))
    assert describe(database_url(config)) == "postgresql://db:5432/lollms"
    with pytest.raises(ConfigError, match=r"storage\.url"):
        parse_config({"storage": {"url": "mysql://db/lollms"}})
    from_env = parse_config({"storage": {"url_env": "TEST_STORE_URL", "url": "sqlite:///x"}})
    monkeypatch.delenv("TEST_STORE_URL", raising=False)
    with pytest.raises(ConfigError, match="TEST_STORE_URL"):
        database_url(from_env)
    monkeypatch.setenv("TEST_STORE_URL", "postgresql://u:p@h/d")
    assert database_url(from_env) == "postgresql://u:p@h/d"
    assert database_url(parse_config({})).endswith("/lollms.sqlite")
