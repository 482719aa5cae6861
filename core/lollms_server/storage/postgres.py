"""The PostgreSQL store (asyncpg): a connection pool shared by the requests of one replica;
each write is its own autocommitted statement, durable once it returns."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import asyncpg

from ..circuit import CircuitBreaker
from ..errors import BackendUnavailable, ConfigError
from .base import Row, describe

PLACEHOLDER = re.compile(r"\?")
MIGRATION_LOCK = 0x6C6F6C6D73  # pg_advisory_xact_lock key: one migrating replica at a time
#: what a lost or refused connection raises: the request gets a 503, not a 500. Class 57
#: (`OperatorInterventionError`: admin or crash shutdown, pg_terminate_backend, a failover)
#: ends the session; `InternalClientError` is a pooled connection that got that FATAL while
#: idle and has not yet seen its socket close
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
)

#: what connecting may raise besides: a bad password, a missing database
REFUSED: tuple[type[BaseException], ...] = (*UNREACHABLE, asyncpg.PostgresError)


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2...`."""
    counter = iter(range(1, 1_000_000))
    return PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class PostgresStore:
    """Keys and audit rows in PostgreSQL, shared by every replica."""

    dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool, where: str, statement_timeout_s: float = 5.0) -> None:
        self.pool = pool
        self.where = where
        self.statement_timeout_s = statement_timeout_s
        self._sql: dict[str, str] = {}
        # a statement that timed out (a hung database, a partition) opens it for 1 s, then one
        # trial at a time waits for the database while the other calls fail at once
        self._hung = CircuitBreaker(where, failure_threshold=1, window_s=1.0, cooldown_s=1.0)

    @classmethod
    async def connect(
        cls, url: str, pool_size: int, timeout_s: float, statement_timeout_s: float = 5.0
    ) -> PostgresStore:
        """A pool of up to `pool_size` connections to `url`; each query, write or insert
        (waiting for a connection included) fails as unreachable after `statement_timeout_s`."""
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=pool_size,
                timeout=timeout_s,
                command_timeout=60,
                reset=_keep_session,
            )
        except REFUSED as exc:  # at start-up: the operator's to fix, one line, no traceback
            raise ConfigError(
                f"cannot connect to the database {describe(url)}: {type(exc).__name__}: {exc}"
            ) from exc
        return cls(pool, describe(url), statement_timeout_s)

    def _numbered(self, sql: str) -> str:
        translated = self._sql.get(sql)
        if translated is None:
            translated = self._sql[sql] = numbered(sql)
        return translated

    async def query(self, sql: str, params: Any = ()) -> list[Row]:
        """The rows of one read query."""
        return list(await self._call("fetch", self._numbered(sql), params))

    async def execute(self, sql: str, params: Any = ()) -> int:
        """Run one write, committed when this returns; its row count."""
        status = await self._call("execute", self._numbered(sql), params)
        count = status.rsplit(" ", 1)[-1]  # "UPDATE 1", "INSERT 0 1", "DELETE 7"
        return int(count) if count.isdigit() else 0

    async def insert(self, sql: str, params: Any = ()) -> int:
        """Run one INSERT, committed when this returns; the new row's id."""
        return int(await self._call("fetchval", self._numbered(sql) + " RETURNING id", params))

    async def _call(self, method: str, sql: str, params: Any) -> Any:
        """One statement on a pooled connection within `statement_timeout_s` (the wait for a
        connection included); a connection that failed or timed out is dropped, never reused
        (nor waited for: a hung server would hold its cancellation). After a timeout, calls
        fail at once while one trial at a time waits (`_hung`)."""
        if not self._hung.allows():
            raise self._unreachable(TimeoutError())
        trial = self._hung.state == "half_open"
        connection = None
        try:
            async with asyncio.timeout(self.statement_timeout_s):
                connection = await self.pool.acquire()
                result = await getattr(connection, method)(sql, *params)
        except UNREACHABLE as exc:
            if connection is not None:
                _drop(connection)
            if isinstance(exc, TimeoutError):
                self._hung.failure("timeout")
            raise self._unreachable(exc) from exc
        except Exception:
            self._hung.success()  # the database answered (with an error of the query's own)
            raise
        finally:
            if trial:  # answered, failed or cancelled: the next call may be the trial
                self._hung.end_trial()
            if connection is not None:
                await self.pool.release(connection)
        self._hung.success()
        return result

    async def revision(self) -> int:
        """`meta.schema_version`, 0 for an empty database."""
        async with self.pool.acquire() as connection:
            return await _revision(connection)

    async def migrate(self, sql: str, expected: int, target: int, record: str | None) -> bool:
        """Run one migration step in one transaction, holding the migration lock."""
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            if await _revision(connection) != expected:
                return False
            await connection.execute(sql)
            await connection.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', $1)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                str(target),
            )
            if record is not None:
                await connection.execute(
                    "INSERT INTO schema_history(revision, action, at)"
                    " VALUES ($1, $2, extract(epoch FROM now()))",
                    target,
                    record,
                )
        return True

    async def maintain(self) -> None:
        """Nothing to do: PostgreSQL checkpoints and vacuums on its own."""
        await asyncio.Event().wait()

    async def close(self) -> None:
        """Close the pool (waits for the connections in use)."""
        await self.pool.close()

    def _unreachable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"the database {self.where} is unreachable ({type(exc).__name__})", retry_after=1
        )


def _drop(connection: Any) -> None:
    """Close a connection that failed; asyncpg may have closed and released it already."""
    with contextlib.suppress(asyncpg.InterfaceError):
        connection.terminate()


async def _keep_session(connection: Any) -> None:
    """No reset query when a connection goes back to the pool (a round trip per statement):
    the store never changes session state (no SET, LISTEN, cursors or session locks)."""


async def _revision(connection: Any) -> int:
    if await connection.fetchval("SELECT to_regclass('meta')") is None:
        return 0
    value = await connection.fetchval("SELECT value FROM meta WHERE key = 'schema_version'")
    return int(value) if value else 0
