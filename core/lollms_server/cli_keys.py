"""`lollms-server keys create|list|revoke`: key management from the local machine.

The first admin key can only be made here: no HTTP endpoint hands out keys to the first caller.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime

from .config import Config
from .errors import InvalidRequest, LollmsError, NotFound
from .security.api_keys import KEY_FORMAT, KeyRecord, KeyStore
from .security.audit import AuditLog
from .storage import open_store, schema

# the key store's fields as `keys create` spells them: a refusal names the option typed
OPTIONS = {
    "allowed_bindings": "--bindings",
    "allowed_models": "--models",
    "rpm": "--rpm",
    "tpm": "--tpm",
    "max_concurrent": "--concurrent",
    "name": "--name",
    "role": "--role",
}


def _key_id(given: str) -> str:
    """The id to revoke: a whole key pasted in (a leaked one, say) stands for its id, and its
    secret is never repeated in a message."""
    match = KEY_FORMAT.match(given)
    return match.group("id") if match else given


def _split(value: str | None) -> list[str] | None:
    """The names of a comma-separated option; None when the option was not given (an empty
    value is an empty list, which the key store refuses: it would admit nothing)."""
    return [v.strip() for v in value.split(",") if v.strip()] if value is not None else None


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M")


def _limits(record: KeyRecord) -> str:
    """A key's allow-lists and limits as `bindings=a,b models=i/m rpm=60`, or `-`."""
    parts = [
        f"{name}={','.join(sorted(values))}"
        for name, values in (
            ("bindings", record.allowed_bindings),
            ("models", record.allowed_models),
        )
        if values is not None
    ]
    limits = (("rpm", record.rpm), ("tpm", record.tpm), ("concurrent", record.max_concurrent))
    parts += [f"{name}={value}" for name, value in limits if value is not None]
    return " ".join(parts) or "-"


def _warn_unknown_instances(record: KeyRecord, config: Config) -> None:
    """Warn about allow-list entries naming no enabled instance of this config (a typo makes
    a key that admits nothing; kept, as the instance may be added later)."""
    named = set(record.allowed_bindings or ())
    named |= {entry.partition("/")[0] for entry in record.allowed_models or ()}
    instances = {name for name, spec in config.bindings.items() if spec.enabled}
    for name in sorted(named - instances):
        print(
            f"lollms-server: warning: {config.path or 'the config'} has no enabled instance "
            f"{name!r} (instances: {', '.join(sorted(instances)) or 'none'}); "
            "the key admits nothing there until one exists",
            file=sys.stderr,
        )


def keys_command(args: argparse.Namespace, config: Config) -> int:
    """Run one keys subcommand against the configured database."""
    return asyncio.run(_keys_command(args, config))


async def _keys_command(args: argparse.Namespace, config: Config) -> int:
    store = await open_store(config)
    keys, audit = KeyStore(store), AuditLog(store)
    try:
        await schema.prepare(store, config.storage.migrate_on_start)
        if args.keys_command == "create":
            if args.expires_days is not None and args.expires_days <= 0:
                raise InvalidRequest("--expires-days must be over 0 (leave it out: no expiry)")
            key, record = await keys.create(
                args.name,
                args.role,
                expires_at=(
                    time.time() + args.expires_days * 86400
                    if args.expires_days is not None
                    else None
                ),
                allowed_bindings=_split(args.bindings),
                allowed_models=_split(args.models),
                rpm=args.rpm,
                tpm=args.tpm,
                max_concurrent=args.concurrent,
            )
            await audit.record("key_created", client="cli", detail={"new_key_id": record.id})
            print(key)
            print(f"key id {record.id} ({record.role}); it is shown only now", file=sys.stderr)
            _warn_unknown_instances(record, config)
        elif args.keys_command == "list":
            head = f"{'id':<14}{'name':<20}{'role':<7}{'status':<9}{'created':<18}{'expires':<18}"
            print(f"{head}limits")
            for item in await keys.list():
                print(
                    f"{item.id:<14}{item.name[:19]:<20}{item.role:<7}{item.status():<9}"
                    f"{_when(item.created_at):<18}{_when(item.expires_at):<18}{_limits(item)}"
                )
        else:
            record = await keys.revoke(_key_id(args.key_id))
            await audit.record("key_revoked", client="cli", detail={"revoked_key_id": record.id})
            print(f"revoked {record.id}")
    except NotFound as exc:
        hint = " (an id is the 12 characters after `lollms_`; `lollms-server keys list` shows them)"
        print(f"lollms-server: {exc.message}{hint}", file=sys.stderr)
        return 1
    except LollmsError as exc:
        flag = OPTIONS.get(exc.param or "")
        print(f"lollms-server: {f'{flag}: ' if flag else ''}{exc.message}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    return 0
