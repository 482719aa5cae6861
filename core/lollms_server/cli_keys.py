"""`lollms-server keys create|list|revoke`: key management from the local machine.

The first admin key can only be made here: no HTTP endpoint hands out keys to the first caller.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from .config import Config
from .errors import LollmsError
from .security.api_keys import KeyStore
from .security.audit import AuditLog
from .store import Store


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M")


def keys_command(args: argparse.Namespace, config: Config) -> int:
    """Run one keys subcommand against the data dir's database."""
    store = Store(config.database_path)
    keys, audit = KeyStore(store), AuditLog(store)
    try:
        if args.keys_command == "create":
            key, record = keys.create(
                args.name,
                args.role,
                expires_at=time.time() + args.expires_days * 86400 if args.expires_days else None,
                allowed_bindings=_split(args.bindings),
                allowed_models=_split(args.models),
                rpm=args.rpm,
                tpm=args.tpm,
                max_concurrent=args.concurrent,
            )
            audit.record_now("key_created", client="cli", detail={"new_key_id": record.id})
            print(key)
            print(f"key id {record.id} ({record.role}); it is shown only now", file=sys.stderr)
        elif args.keys_command == "list":
            print(f"{'id':<14}{'name':<20}{'role':<7}{'status':<9}{'created':<18}expires")
            for item in keys.list():
                print(
                    f"{item.id:<14}{item.name[:19]:<20}{item.role:<7}{item.status():<9}"
                    f"{_when(item.created_at):<18}{_when(item.expires_at)}"
                )
        else:
            record = keys.revoke(args.key_id)
            audit.record_now("key_revoked", client="cli", detail={"revoked_key_id": record.id})
            print(f"revoked {record.id}")
    except LollmsError as exc:
        print(f"lollms-server: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0
