"""Keys and the audit log live in one store: SQLite in the data dir (the embedded default) or
PostgreSQL (shared by replicas). One interface, `Store`; `open_store` picks the engine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..config import Config
from ..errors import ConfigError

Row = Any  # sqlite3.Row or asyncpg.Record: both read by column name and by index
POSTGRES_SCHEMES = ("postgresql", "postgres")
SQLITE_PREFIX = "sqlite:///"
INSTALL_HINT = "pip install 'lollms-server[postgres]'"


class Store(Protocol):
    """SQL with `?` placeholders against the keys and audit tables; every write is committed
    (durable against a crash of this process) before the call returns."""

    dialect: str  # "sqlite" or "postgresql": picks the migration files

    async def query(self, sql: str, params: Any = ()) -> list[Row]:
        """The rows of one read query (indexed lookups only)."""
        ...

    async def execute(self, sql: str, params: Any = ()) -> int:
        """Run and commit one write; return its row count."""
        ...

    async def insert(self, sql: str, params: Any = ()) -> int:
        """Run and commit one INSERT into a table with an `id` column; return the new id."""
        ...

    async def revision(self) -> int:
        """The schema revision of the database (0 when it is empty)."""
        ...

    async def migrate(self, sql: str, expected: int, target: int, record: str | None) -> bool:
        """In one transaction, when the revision is still `expected`: run `sql`, set the
        revision to `target`, add `record` to the history when given; False when another
        process moved the revision first."""
        ...

    async def maintain(self) -> None:
        """Background upkeep until cancelled (SQLite: checkpoints; PostgreSQL: none)."""
        ...

    async def close(self) -> None:
        """Release the connections."""
        ...


def database_url(config: Config) -> str:
    """`[storage] url_env`'s variable, else `url`, else the SQLite file in the data dir."""
    storage = config.storage
    if storage.url_env:
        value = os.environ.get(storage.url_env, "").strip()
        if not value:
            raise ConfigError(
                f"[storage] url_env names {storage.url_env}, but that variable is not set"
            )
        return value
    return storage.url or f"{SQLITE_PREFIX}{config.database_path}"


def is_postgres(url: str) -> bool:
    """Whether `url` names a PostgreSQL database."""
    return urlsplit(url).scheme in POSTGRES_SCHEMES


def describe(url: str) -> str:
    """`url` without its credentials (for logs and errors)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return url
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def sqlite_path(config: Config) -> Path | None:
    """The SQLite database file of the configured store; None when it is PostgreSQL."""
    url = database_url(config)
    return None if is_postgres(url) else Path(url.removeprefix(SQLITE_PREFIX))


async def open_store(config: Config) -> Store:
    """Connect to the configured database (its schema is `migrations.prepare`'s job)."""
    url = database_url(config)
    if is_postgres(url):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise ConfigError(
                f"[storage] url is a PostgreSQL database, but its driver (asyncpg) is not "
                f"installed: {INSTALL_HINT}"
            ) from exc
        return await PostgresStore.connect(
            url, config.storage.pool_size, config.storage.connect_timeout_s
        )
    from .sqlite import SqliteStore

    path = url.removeprefix(SQLITE_PREFIX)  # sqlite:///relative or sqlite:////absolute
    if not url.startswith(SQLITE_PREFIX) or not path:
        raise ConfigError(f"[storage] url: not a sqlite:/// or postgresql:// URL: {describe(url)}")
    return SqliteStore.open(path)
