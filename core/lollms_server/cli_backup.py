"""`lollms-server backup <file>` / `restore <file>`: the SQLite store (keys, audit log).

Backup is online: SQLite's backup API copies a consistent snapshot while the server keeps
serving and writing (WAL readers never block writers). Restore refuses a database that a running
server (or any other connection) holds open: it takes SQLite's exclusive lock for the whole copy.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from .config import Config
from .storage import sqlite_path

LOCK_WAIT_S = 0.5
REQUIRED_TABLES = frozenset({"meta", "api_keys", "audit"})


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


def add_backup_parsers(commands: Any) -> None:
    """The `backup` and `restore` subcommands."""
    backup = commands.add_parser("backup", help="copy the database (keys, audit) while serving")
    backup.add_argument("file", type=Path, help="the backup file to write (replaced if present)")
    restore = commands.add_parser("restore", help="replace the database with a backup file")
    restore.add_argument("file", type=Path, help="a file written by `lollms-server backup`")
    restore.add_argument(
        "--force", action="store_true", help="replace an existing database (server stopped)"
    )


def backup_command(args: argparse.Namespace, config: Config) -> int:
    """Run `backup` or `restore` against the SQLite store."""
    try:
        database = sqlite_path(config)
        if database is None:
            raise BackupError(
                "the store is PostgreSQL: back it up with pg_dump and restore it with "
                "pg_restore (docs/deployment.md)"
            )
        if args.command == "backup":
            rows = backup(database, args.file)
            print(f"backed up {database} to {args.file} ({rows} keys)")
        else:
            rows = restore(args.file, database, force=args.force)
            print(f"restored {database} from {args.file} ({rows} keys)")
    except BackupError as exc:
        print(f"lollms-server: {exc}", file=sys.stderr)
        return 1
    except (OSError, sqlite3.Error) as exc:  # a folder that is missing, a full disk...
        print(f"lollms-server: {args.command} failed: {exc}", file=sys.stderr)
        return 1
    return 0


def backup(database: Path, target: Path) -> int:
    """Copy `database` to `target` (atomically replaced) as one self-contained file; return
    its key count."""
    if not database.is_file():
        raise BackupError(f"no database at {database} (wrong --config or data dir?)")
    if target.resolve() == database.resolve():
        raise BackupError("the backup file must not be the database itself")
    if target.exists() and not target.is_file():  # a device, /dev/stdout, a pipe, a folder
        raise BackupError(f"{target} is not a regular file: name the file to write the backup to")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    source = sqlite3.connect(database, timeout=5.0)
    try:
        copy = sqlite3.connect(partial, isolation_level=None)
        try:
            source.backup(copy)  # one step: a consistent snapshot
            copy.execute("PRAGMA journal_mode=DELETE")  # no -wal file to carry along
            keys = _check(copy, partial)
        finally:
            copy.close()
    finally:
        source.close()
    os.replace(partial, target)
    return keys


def restore(backup_file: Path, database: Path, *, force: bool = False) -> int:
    """Replace `database` with `backup_file`; refuse while anything holds the database open,
    or when it exists and `force` is not set. Return the restored key count."""
    if not backup_file.is_file():
        raise BackupError(f"no backup file at {backup_file}")
    if backup_file.resolve() == database.resolve():
        raise BackupError("the backup file is the database itself")
    source = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    try:
        _check(source, backup_file)
        if database.exists() and not force:
            raise BackupError(
                f"{database} exists; stop the server and run `restore --force` to replace it"
            )
        database.parent.mkdir(parents=True, exist_ok=True)
        target = sqlite3.connect(database, timeout=LOCK_WAIT_S, isolation_level=None)
        try:
            target.execute("PRAGMA locking_mode=EXCLUSIVE")  # held until closed
            try:
                target.execute("BEGIN EXCLUSIVE")
                target.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise BackupError(
                    f"{database} is in use (a running server?): stop it, then restore"
                ) from exc
            source.backup(target)
            target.execute("PRAGMA journal_mode=WAL")  # what the server runs with
            return _check(target, database)
        finally:
            target.close()
    finally:
        source.close()


def _check(db: sqlite3.Connection, path: Path) -> int:
    """Verify that `db` is an intact lollms database; return its key count."""
    try:
        intact = db.execute("PRAGMA quick_check").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a SQLite database: {exc}") from exc
    if intact != "ok":
        raise BackupError(f"{path} is damaged: {intact}")
    if not tables >= REQUIRED_TABLES:
        raise BackupError(f"{path} is not a lollms-server database (tables: {sorted(tables)})")
    count: int = db.execute("SELECT count(*) FROM api_keys").fetchone()[0]
    return count
