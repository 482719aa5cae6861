"""Versioned schema migrations: numbered SQL files per dialect in `migrations/<dialect>/`,
`NNNN_name.up.sql` and (when it can be undone) `NNNN_name.down.sql`. The revision lives in
`meta.schema_version`; each step runs in one transaction with its revision change."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..errors import ConfigError
from .base import Store

log = logging.getLogger(__name__)
FOLDER = Path(__file__).parent / "migrations"
FILE_NAME = re.compile(r"^(?P<revision>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<way>up|down)\.sql$")
#: the oldest revision this release's code runs on: migrations only add (expand), so a
#: rolled-back release and a replica not yet upgraded both keep serving
OLDEST_SUPPORTED = 3
HISTORY_SINCE = 4  # the revision that adds `schema_history`


@dataclass(frozen=True)
class Migration:
    """One numbered step and its SQL both ways (`down` is None when it cannot be undone)."""

    revision: int
    name: str
    up: str
    down: str | None


@cache
def migrations(dialect: str) -> tuple[Migration, ...]:
    """The dialect's migrations, oldest first."""
    found: dict[int, dict[str, str]] = {}
    for path in sorted((FOLDER / dialect).iterdir()):
        match = FILE_NAME.match(path.name)
        if match is None:
            continue
        step = found.setdefault(int(match["revision"]), {"name": match["name"]})
        step[match["way"]] = path.read_text(encoding="utf-8")
    return tuple(
        Migration(revision, step["name"], step["up"], step.get("down"))
        for revision, step in sorted(found.items())
    )


def head(dialect: str) -> int:
    """The newest revision this release knows."""
    return migrations(dialect)[-1].revision


def baseline(dialect: str) -> int:
    """The oldest revision a database can be rolled back to."""
    return migrations(dialect)[0].revision


async def upgrade(store: Store, target: int | None = None) -> list[Migration]:
    """Apply every migration up to `target` (default: the head); return those applied."""
    steps = migrations(store.dialect)
    target = head(store.dialect) if target is None else target
    if target not in {m.revision for m in steps}:
        raise ConfigError(f"no revision {target}; known: {', '.join(_names(steps))}")
    applied: list[Migration] = []
    while True:
        current = await store.revision()
        step = next((m for m in steps if current < m.revision <= target), None)
        if step is None:
            return applied
        record = f"upgrade {step.name}" if step.revision >= HISTORY_SINCE else None
        if await store.migrate(step.up, current, step.revision, record):
            log.info("database migrated to revision %d (%s)", step.revision, step.name)
            applied.append(step)


async def downgrade(store: Store, target: int) -> list[Migration]:
    """Undo the migrations above `target`, newest first; return those undone."""
    steps = migrations(store.dialect)
    if target < baseline(store.dialect) or target not in {m.revision for m in steps}:
        raise ConfigError(
            f"cannot downgrade to revision {target}; known: {', '.join(_names(steps))}"
        )
    undone: list[Migration] = []
    while True:
        current = await store.revision()
        if current <= target:
            return undone
        step = next((m for m in steps if m.revision == current), None)
        if step is None or step.down is None:
            raise ConfigError(f"revision {current} cannot be undone by this release")
        previous = max(m.revision for m in steps if m.revision < current)
        record = f"downgrade {step.name}" if previous >= HISTORY_SINCE else None
        if await store.migrate(step.down, current, previous, record):
            log.info("database rolled back to revision %d (undid %s)", previous, step.name)
            undone.append(step)


async def prepare(store: Store, migrate: bool) -> int:
    """At start-up: upgrade to the head (`migrate`), or check the revision can be served;
    return the revision served. A newer database than this release knows is refused."""
    current, newest = await store.revision(), head(store.dialect)
    if current > newest:
        raise ConfigError(
            f"the database is at schema revision {current}, newer than this release knows "
            f"({newest}): run the newer release, or roll the database back with its "
            f"`lollms-server db downgrade {newest}`"
        )
    if migrate and current < newest:
        await upgrade(store)
        return newest
    if current < OLDEST_SUPPORTED:
        raise ConfigError(
            f"the database is at schema revision {current}; this release needs "
            f"{OLDEST_SUPPORTED} or newer: run `lollms-server db upgrade`"
        )
    if current < newest:
        log.warning(
            "database at revision %d of %d: run `lollms-server db upgrade`", current, newest
        )
    return current


def _names(steps: tuple[Migration, ...]) -> list[str]:
    return [f"{m.revision} ({m.name})" for m in steps]
