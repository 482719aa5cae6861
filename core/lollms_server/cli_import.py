"""`lollms-server config import <path>`: write lollms.toml from an upstream lollms_server config.

It prints what it mapped, what it could not (and why) and what changed meaning. Upstream's plain
`allowed_api_keys` become keys of this server's key store (salted hashes); each new key is printed
once on stdout and never logged. Upstream personality and function folders are used in place.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from marshmallow import RAISE, ValidationError

from .config import Config, describe_errors, load_config, parse_config
from .config_import import Report, Upstream, convert, locate

BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
TABLE_ORDER = ("server", "bindings", "defaults", "personalities", "functions", "security")


def add_import_parser(config_commands: Any) -> None:
    """The `config import` subcommand."""
    parser = config_commands.add_parser(
        "import", help="write lollms.toml from an upstream lollms_server configuration"
    )
    parser.add_argument(
        "path", type=Path, help="upstream's server folder, its lollms_configs folder or main config"
    )
    parser.add_argument(
        "--server-root",
        type=Path,
        help="upstream's server root (relative paths start there; default: found from the path)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing config file")


def import_command(args: argparse.Namespace, target: Path) -> int:
    """Read the upstream config at `args.path`, write `target`, store the keys, print the report."""
    if target.exists() and not args.force:
        print(f"{target} exists; use --force to overwrite it", file=sys.stderr)
        return 1
    upstream = locate(args.path, args.server_root)
    raw, plain_keys, report = convert(upstream, _installed_types())
    parse_config(raw, source="the imported config")  # refuse before writing anything invalid
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_header(upstream) + to_toml(raw), encoding="utf-8")
    config = load_config(target, create=False)
    _print_report(upstream, target, report, len(plain_keys))
    return _store_keys(config, len(plain_keys))


def _installed_types() -> dict[str, Callable[[dict[str, Any]], str | None]]:
    """Installed binding types, each with a check of a settings mapping (None when it fits)."""
    from .plugins import load_plugins

    def checker(schema: Any) -> Callable[[dict[str, Any]], str | None]:
        def check(settings: dict[str, Any]) -> str | None:
            try:
                schema().load(settings, unknown=RAISE)
            except ValidationError as exc:
                return describe_errors(exc.messages, settings, "settings").split("\n", 1)[-1]
            return None

        return check

    plugins = load_plugins()
    return {name: checker(cls.ConfigSchema) for name, cls in plugins.binding_classes.items()}


def _store_keys(config: Config, count: int) -> int:
    """One user key per upstream key, made by `keys create` (it stores the key in the
    configured database and prints it once)."""
    from .cli_keys import keys_command

    for index in range(1, count + 1):
        print(f"  upstream-{index}: ", end="", flush=True)
        created = keys_command(
            argparse.Namespace(
                keys_command="create",
                name=f"upstream-{index}",
                role="user",
                expires_days=None,
                bindings=None,
                models=None,
                rpm=None,
                tpm=None,
                concurrent=None,
            ),
            config,
        )
        if created != 0:
            return created
    return 0


def _header(upstream: Upstream) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"# Imported by `lollms-server config import` on {stamp} from\n"
        f"# {upstream.main_file} (upstream server root {upstream.root}).\n"
        "# `lollms-server config init` writes the commented default with every setting.\n\n"
    )


def _print_report(upstream: Upstream, target: Path, report: Report, keys: int) -> None:
    print(f"read {upstream.main_file}")
    for name, path in sorted(upstream.instance_files.items()):
        if path != upstream.main_file:
            print(f"read {path} (instance {name!r})")
    print(f"wrote {target}")
    for title, lines in (
        ("mapped", report.mapped),
        ("not mapped", report.not_mapped),
        ("changed meaning", report.changed),
    ):
        print(f"\n{title}:" + ("" if lines else " nothing"))
        for line in lines:
            print(f"  - {line}")
    if keys:
        print(
            "\nsecurity.allowed_api_keys: each upstream key is replaced by a new key of this "
            "server (stored as a salted hash; keys read lollms_<id>_<secret>). Give the clients "
            "the new key; it is shown only now. They are user keys: make an admin key with "
            "`lollms-server keys create --role admin`."
        )


def to_toml(raw: Mapping[str, Any]) -> str:
    """Our config mapping as TOML: top-level tables, `[bindings.<name>]` one table each."""
    parts = []
    for table in [*TABLE_ORDER, *(t for t in raw if t not in TABLE_ORDER)]:
        values = raw.get(table)
        if not values:
            continue
        if table == "bindings":
            for name, spec in values.items():
                parts.append(_table(f"bindings.{_key(name)}", spec))
        else:
            parts.append(_table(table, values))
    return "\n".join(parts)


def _table(name: str, values: Mapping[str, Any]) -> str:
    lines = [f"[{name}]"] + [f"{_key(k)} = {_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)  # JSON numbers and ASCII-escaped strings are valid TOML
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
