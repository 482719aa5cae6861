"""The audit log: auth events, key and admin actions, generation metadata; append-only."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ..json_encoding import one_shot
from ..storage import Store
from .audit_failures import FailureLog

COLUMNS = (
    "at", "event", "key_id", "client", "method", "path", "status", "request_id", "instance",
    "model", "generation_type", "duration_ms", "prompt_tokens", "completion_tokens", "detail",
)  # fmt: skip
INSERT = f"INSERT INTO audit({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
FIELD_CHARS = 256  # longest stored text column (paths, clients, models, ids: a client chose them)
DETAIL_CHARS = 1024  # longest string inside `detail`, except an opted-in prompt
PURGE_BATCH = 10_000  # ids per DELETE of the purge: a big backlog is many short statements
UNCAPPED_DETAIL = frozenset({"prompt"})
_DETAIL_ENCODER = one_shot(json.JSONEncoder(sort_keys=True))  # not one per call as json.dumps


class AuditLog:
    """Writes events to the `audit` table, committed before the caller goes on."""

    def __init__(
        self,
        store: Store,
        retention_days: float = 90.0,
        log_prompts: bool = False,
        on_write_failure: Callable[[], None] | None = None,
        failure_interval_s: float = 60.0,
    ):
        self.store = store
        self.retention_days = retention_days
        self.log_prompts = log_prompts
        self.on_write_failure = on_write_failure  # counts failed writes for the alerts
        self.failures = FailureLog(self, failure_interval_s)

    async def record(self, event: str, **fields: Any) -> None:
        """Append one event; unknown field names are a programming error (KeyError)."""
        await self.insert(event, **fields)

    async def insert(self, event: str, **fields: Any) -> int:
        """Append one event, committed when this returns; return its row id."""
        row = self._row(event, fields)
        try:
            return await self.store.insert(INSERT, row)
        except Exception:
            if self.on_write_failure is not None:
                self.on_write_failure()
            raise

    async def set_detail(self, row_id: int, detail: dict[str, Any]) -> None:
        """Replace one event's detail (the running count of an aggregated auth failure)."""
        await self.store.execute(
            "UPDATE audit SET detail = ? WHERE id = ?", (_detail_json(detail), row_id)
        )

    def _row(self, event: str, fields: dict[str, Any]) -> list[Any]:
        values: dict[str, Any] = dict.fromkeys(COLUMNS)
        values.update(at=time.time(), event=event)
        for name, value in fields.items():
            if name not in values:
                raise KeyError(f"unknown audit field {name!r}")
            if isinstance(value, str) and len(value) > FIELD_CHARS and name != "detail":
                value = _capped(value, FIELD_CHARS)
            values[name] = value
        if isinstance(values["detail"], dict):
            values["detail"] = _detail_json(values["detail"])
        return list(values.values())  # built in COLUMNS' order

    async def query(
        self,
        *,
        limit: int = 100,
        before_id: int | None = None,
        event: str | None = None,
        key_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest events first, optionally filtered, for admins."""
        where: list[str] = []
        params: list[Any] = []
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        if event:
            where.append("event = ?")
            params.append(event)
        if key_id:
            where.append("key_id = ?")
            params.append(key_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self.store.query(
            f"SELECT * FROM audit {clause} ORDER BY id DESC LIMIT ?", [*params, limit]
        )
        events = []
        for row in rows:
            item = dict(row)
            item["detail"] = json.loads(item["detail"]) if item["detail"] else None
            events.append(item)
        return events

    async def purge(self) -> int:
        """Delete events older than the retention period; return how many.

        Events are appended in time order, so the last expired id is found by a binary search
        over ids (no index on `at`: each write would pay for one).
        """
        cutoff = time.time() - self.retention_days * 86400
        bounds = (await self.store.query("SELECT min(id), max(id) FROM audit"))[0]
        low, high, last = bounds[0], bounds[1], None
        while low is not None and high is not None and low <= high:
            middle = (low + high) // 2
            row = await self.store.query(
                "SELECT id, at FROM audit WHERE id >= ? ORDER BY id LIMIT 1", [middle]
            )
            if row and row[0]["at"] < cutoff:
                last, low = row[0]["id"], row[0]["id"] + 1
            else:
                high = middle - 1
        if last is None:
            return 0
        deleted = 0
        for start in range(bounds[0], last + 1, PURGE_BATCH):  # each DELETE within the
            end = min(start + PURGE_BATCH - 1, last)  # store's statement timeout
            deleted += await self.store.execute(
                "DELETE FROM audit WHERE id >= ? AND id <= ?", (start, end)
            )
        return deleted


def _capped(value: Any, limit: int) -> Any:
    """A string cut to `limit` characters (marked with an ellipsis); other values as they are."""
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + "\u2026"
    return value


def _detail_json(detail: dict[str, Any]) -> str:
    return _DETAIL_ENCODER(
        {k: v if k in UNCAPPED_DETAIL else _capped(v, DETAIL_CHARS) for k, v in detail.items()}
    )
