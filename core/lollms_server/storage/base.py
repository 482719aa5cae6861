"""What every store engine is: the `Store` interface and the shared helpers of the engines."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

Row = Any  # sqlite3.Row or asyncpg.Record: both read by column name and by index


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


def describe(url: str) -> str:
    """`url` without its credentials (for logs and errors)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return url
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
