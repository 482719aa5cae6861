"""Auth failures folded into one audit row per source, reason and interval, with a count.

A flood of bad requests (no key, a wrong key, a long path) must not fill the disk: the first
failure of a source in an interval is written at once (so it survives a crash), the repeats
only raise its `count`, written back every few seconds and when the interval ends. Sources are
(client address, status, reason, known key id); past MAX_SOURCES in one interval the rest
share one row per status whose client is `*`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)
MAX_SOURCES = 1024
OVERFLOW_REASON = f"more than {MAX_SOURCES} addresses and reasons in this interval"
FLUSH_EVERY_S = 5.0
REASON_CHARS = 200
Source = tuple[str, int, str, str | None]


class AuditRows(Protocol):
    """The audit log, as far as the failure counts write to it."""

    async def insert(self, event: str, **fields: Any) -> int:
        """Add one row; its id."""

    async def set_detail(self, row_id: int, detail: dict[str, Any]) -> None:
        """Replace a row's detail."""


@dataclass
class _Burst:
    """The failures of one source in the current interval, and the row that records them."""

    row_id: int
    started: float
    detail: dict[str, Any] = field(default_factory=dict)
    written: int = 1

    @property
    def count(self) -> int:
        """Failures so far."""
        return int(self.detail["count"])


class FailureLog:
    """Records `auth_failed` events, aggregated per source and interval."""

    def __init__(self, audit: AuditRows, interval_s: float = 60.0) -> None:
        self.audit = audit
        self.interval_s = interval_s
        self.bursts: dict[Source, _Burst] = {}

    async def record(
        self,
        *,
        client: str,
        status: int,
        reason: str,
        key_id: str | None,
        method: str,
        path: str,
        user_agent: str | None,
    ) -> None:
        """Count one failure: a new row for a new source or interval, else a higher count."""
        now = time.time()
        reason = reason[:REASON_CHARS]
        source: Source = (client, status, reason, key_id)
        if source not in self.bursts and len(self.bursts) >= MAX_SOURCES:
            await self.flush(now)  # ended intervals make room
            if len(self.bursts) >= MAX_SOURCES:  # one row per status for all the rest
                source, reason = ("*", status, "*", None), OVERFLOW_REASON
        burst = self.bursts.get(source)
        if burst is not None and now - burst.started < self.interval_s:
            burst.detail["count"] += 1
            burst.detail["last_at"] = now
            return
        detail: dict[str, Any] = {"reason": reason, "count": 1, "last_at": now}
        if user_agent:
            detail["user_agent"] = user_agent
        # registered before the insert awaits: repeats arriving meanwhile raise its count
        fresh = self.bursts[source] = _Burst(0, now, detail)
        if burst is not None:
            await self._write_back(burst)
        try:
            fresh.row_id = await self.audit.insert(
                "auth_failed",
                key_id=key_id,
                client=source[0],
                method=method,
                path=path,
                status=status,
                detail=dict(detail),
            )
        except BaseException:
            if self.bursts.get(source) is fresh:
                del self.bursts[source]
            raise

    async def flush(self, now: float | None = None) -> None:
        """Write every changed count; forget sources whose interval has ended."""
        now = time.time() if now is None else now
        for source, burst in list(self.bursts.items()):
            await self._write_back(burst)
            if now - burst.started >= self.interval_s and self.bursts.get(source) is burst:
                del self.bursts[source]

    async def _write_back(self, burst: _Burst) -> None:
        if burst.row_id and burst.count != burst.written:  # row_id 0: its insert is pending
            count = burst.count  # repeats during the write are written next time
            await self.audit.set_detail(burst.row_id, burst.detail)
            burst.written = count

    async def run(self, every_s: float = FLUSH_EVERY_S) -> None:
        """Flush every `every_s` until cancelled, and once more at the end."""
        try:
            while True:
                await asyncio.sleep(every_s)
                await self.flush()
        finally:
            try:
                await self.flush()
            except Exception:  # at shutdown: the counts are lost, the server still stops
                log.exception("could not write the last auth-failure counts")
