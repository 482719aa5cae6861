"""Keys and the audit log live in one store: SQLite in the data dir (the embedded default) or
PostgreSQL (shared by replicas). One interface, `Store`; `open_store` picks the engine."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from ..config import Config
from ..errors import ConfigError
from .base import Row, Store, describe

__all__ = ["Row", "Store", "database_url", "describe", "is_postgres", "open_store", "sqlite_path"]

POSTGRES_SCHEMES = ("postgresql", "postgres")
SQLITE_PREFIX = "sqlite:///"
INSTALL_HINT = "pip install 'lollms-server[postgres]'"


def database_url(config: Config) -> str:
    """`[storage] url_env`'s variable, else `url`, else the SQLite file in the data dir."""
    storage = config.storage
    if storage.url_env:
        value = os.environ.get(storage.url_env, "").strip()
        if not value:
            raise ConfigError(
                f"[storage] url_env names {storage.url_env}, but that variable is not set"
            )
        return _parsable(value, f"[storage] url_env: {storage.url_env}")
    if storage.url:
        return _parsable(storage.url, "[storage] url")
    return f"{SQLITE_PREFIX}{config.database_path}"


def _parsable(url: str, where: str) -> str:
    """`url`, or a ConfigError when a PostgreSQL URL cannot be parsed (never quoting it: the
    unparsable part is usually the password)."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in POSTGRES_SCHEMES:
            return url
        _ = parts.port  # a port that is not a number raises ValueError
        if parts.netloc.count("@") > 1:
            raise ValueError("more than one @")
    except ValueError as exc:
        raise ConfigError(
            f"{where} is not a valid PostgreSQL URL ({exc.__class__.__name__}); percent-encode"
            " any of : / @ # ? [ ] % in the user name or password (/ is %2F, @ is %40, # is %23)"
        ) from None
    return url


def is_postgres(url: str) -> bool:
    """Whether `url` names a PostgreSQL database."""
    return urlsplit(url).scheme in POSTGRES_SCHEMES


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
            url,
            config.storage.pool_size,
            config.storage.connect_timeout_s,
            config.storage.statement_timeout_s,
        )
    from .sqlite import SqliteStore

    path = url.removeprefix(SQLITE_PREFIX)  # sqlite:///relative or sqlite:////absolute
    if not url.startswith(SQLITE_PREFIX) or not path:
        raise ConfigError(f"[storage] url: not a sqlite:/// or postgresql:// URL: {describe(url)}")
    return SqliteStore.open(path)
