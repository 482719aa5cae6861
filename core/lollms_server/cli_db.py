"""`lollms-server db upgrade|downgrade|current|history`: the schema of the keys and audit store."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from .config import Config
from .errors import LollmsError
from .storage import Store, database_url, describe, open_store, schema


def add_db_parser(commands: Any) -> None:
    """The `db` subcommand and its actions."""
    db = commands.add_parser("db", help="migrate the database schema (keys, audit log)")
    actions = db.add_subparsers(dest="db_command", required=True)
    upgrade = actions.add_parser("upgrade", help="apply the migrations (default: to the newest)")
    upgrade.add_argument("revision", nargs="?", type=int, help="stop at this revision")
    downgrade = actions.add_parser("downgrade", help="roll the schema back to a revision")
    downgrade.add_argument("revision", type=int, help="the revision to roll back to")
    actions.add_parser("current", help="print the database's revision and this release's newest")
    actions.add_parser("history", help="list the migrations and when they were applied")


def db_command(args: argparse.Namespace, config: Config) -> int:
    """Run one `db` action against the configured database."""
    return asyncio.run(_db_command(args, config))


async def _db_command(args: argparse.Namespace, config: Config) -> int:
    print(f"database {describe(database_url(config))}", file=sys.stderr)
    store = await open_store(config)
    try:
        if args.db_command == "upgrade":
            steps = await schema.upgrade(store, args.revision)
            for step in steps:
                print(f"applied {step.revision:04d} {step.name}")
        elif args.db_command == "downgrade":
            steps = await schema.downgrade(store, args.revision)
            for step in steps:
                print(f"undid {step.revision:04d} {step.name}")
        elif args.db_command == "current":
            print(f"{await store.revision()} (this release: {schema.head(store.dialect)})")
            return 0
        else:
            await _history(store)
            return 0
        print(f"database at revision {await store.revision()}")
    except LollmsError as exc:
        print(f"lollms-server: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    return 0


async def _history(store: Store) -> None:
    current = await store.revision()
    for step in schema.migrations(store.dialect):
        mark = (
            "current"
            if step.revision == current
            else ("applied" if step.revision < current else "pending")
        )
        print(f"{step.revision:04d} {step.name:<24} {mark}")
    if current >= schema.HISTORY_SINCE:
        for row in await store.query("SELECT revision, action, at FROM schema_history ORDER BY at"):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["at"]))
            print(f"  {when} UTC  {row['action']} -> {row['revision']}")
