"""The `lollms-server` command: serve (default), config init|show|import, plugins, keys, models,
backup, restore, db."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .cli_backup import add_backup_parsers, backup_command
from .cli_db import add_db_parser, db_command
from .cli_import import add_import_parser, import_command
from .cli_models import add_models_parser, models_command
from .config import Config, default_config_path, load_config, port_number, write_default_config
from .config_show import effective_config
from .errors import ConfigError
from .logs import LOG_FORMATS, setup_logging
from .serve_checks import check_listen, warn_without_instances

# after an answer that left the body unread, aiohttp reads and drops the rest for this long
# (default 10 s, without a byte limit: gigabytes of CPU for a refused body); 0: close at once
LINGERING_S = 0.0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `lollms-server` command."""
    parser = argparse.ArgumentParser(prog="lollms-server", description=__doc__)
    parser.add_argument("--version", action="version", version=f"lollms-server {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        help="config file (default: $LOLLMS_CONFIG or <data dir>/lollms.toml)",
    )
    _add_serve_options(parser, defaults=True)  # `lollms-server --port P` serves, as `serve` does
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the server (the default)")
    _add_serve_options(serve, defaults=False)
    config = commands.add_parser("config", help="write or show the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    init = config_commands.add_parser("init", help="write the commented default config")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    config_commands.add_parser("show", help="print the effective config (secrets masked)")
    add_import_parser(config_commands)
    commands.add_parser("plugins", help="list installed plugins and their binding types")
    keys = commands.add_parser("keys", help="create, list or revoke API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", choices=("admin", "user"), default="user")
    create.add_argument("--expires-days", type=float, help="expire after this many days")
    create.add_argument("--bindings", help="comma-separated instances this key may use")
    create.add_argument("--models", help="comma-separated models (<instance>/<model>) allowed")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="text tokens per minute")
    create.add_argument("--concurrent", type=int, help="concurrent generations")
    key_commands.add_parser("list", help="list keys (never their secrets)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    add_models_parser(commands)
    add_backup_parsers(commands)
    add_db_parser(commands)
    _config_option_everywhere(commands)
    return parser


def _config_option_everywhere(commands: argparse._SubParsersAction[Any]) -> None:
    """`--config` after a subcommand too (`lollms-server backup --config F out.db`); given
    there it wins over one given before."""
    for sub in commands.choices.values():
        sub.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                _config_option_everywhere(action)


def _port(value: str) -> int:
    """`--port`: argparse's one-line error (exit 2) for anything but 0-65535."""
    try:
        return port_number(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_serve_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--log-format, --host, --port, --workers; `defaults=False` (the `serve` subcommand) sets
    only what is given, so the values given before `serve` are kept."""
    unset = None if defaults else argparse.SUPPRESS
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=unset,
        help="override [server] log_format (auto: text when stderr is a terminal, else JSON)",
    )
    parser.add_argument("--host", default=unset, help="override [server] host")
    parser.add_argument("--port", type=_port, default=unset, help="override [server] port")
    parser.add_argument(
        "--workers",
        type=int,
        default=1 if defaults else argparse.SUPPRESS,
        help="server processes sharing the port, each with its own event loop (default 1; "
        "N > 1 refuses local-model instances: see docs/deployment.md)",
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    path = args.config or default_config_path()
    try:
        code = _command(args, path)
        sys.stdout.flush()  # a reader that left shows here, not as a traceback at exit
        return code
    except ConfigError as exc:
        print(f"lollms-server: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `keys list | head -1`: the reader had enough, as for any tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _command(args: argparse.Namespace, path: Path) -> int:
    if args.command == "config":
        return _config_command(args, path)
    if args.command == "plugins":
        return _plugins_command()
    if args.command == "keys":
        from .cli_keys import keys_command

        return keys_command(args, load_config(path))
    if args.command == "db":
        return db_command(args, load_config(path))
    if args.command in ("backup", "restore"):
        return backup_command(args, load_config(path))
    if args.command == "models":
        return models_command(args, load_config(path))
    return _serve(path, args.host, args.port, args.log_format, args.workers)


def _config_command(args: argparse.Namespace, path: Path) -> int:
    if args.config_command == "init":
        if path.exists() and not args.force:
            print(f"{path} exists; use --force to overwrite it", file=sys.stderr)
            return 1
        write_default_config(path)
        print(f"wrote {path}")
        return 0
    if args.config_command == "import":
        return import_command(args, path)
    from .plugins import load_plugins
    from .registry import check_config

    config = load_config(path, create=False)
    plugins = load_plugins()
    check_config(config, plugins)  # what `serve` would refuse, before a restart finds it
    print(json.dumps(effective_config(config, plugins), indent=2, default=str))
    return 0


def _plugins_command() -> int:
    from .plugins import load_plugins

    plugins = load_plugins()
    for info in sorted(plugins.infos.values(), key=lambda i: i.name):
        origin = f"{info.distribution} {info.version}" if info.distribution else info.module
        types = ", ".join(info.binding_types) or "-"
        status = f"ERROR: {info.error}" if info.error else "ok"
        print(f"{info.name:<16} {origin:<32} bindings: {types:<24} {status}")
        if info.distribution and (author := _author_of(info.distribution)):
            print(f"  by {author}")
        for binding_type in info.binding_types:
            capabilities = ", ".join(sorted(plugins.binding_classes[binding_type].capabilities))
            print(f"  {binding_type}: {capabilities or 'no capabilities'}")
    if not plugins.infos:
        print("no plugins installed")
    return 1 if plugins.errors else 0


def _author_of(distribution: str) -> str | None:
    """The Author (or Author-email) of an installed distribution."""
    from importlib import metadata

    try:
        meta = metadata.metadata(distribution)
    except metadata.PackageNotFoundError:
        return None
    author = meta.json.get("author") or meta.json.get("author_email")
    return author if isinstance(author, str) else None


def _serve(
    path: Path,
    host: str | None,
    port: int | None,
    log_format: str | None = None,
    workers: int = 1,
) -> int:
    from aiohttp import web

    from .app import create_app
    from .drain import drain_on_sigterm
    from .workers import add_worker_header, follow_parent, worker_index

    config = load_config(path)
    config.host = host or config.host
    config.port = port if port is not None else config.port
    setup_logging(config.log_level, log_format or config.log_format)
    if workers < 1:
        raise ConfigError(f"--workers must be 1 or more (got {workers})")
    is_worker = worker_index() is not None
    if not is_worker:
        warn_without_instances(config)
        check_listen(config.host, config.port)
    if workers > 1:
        return _supervise(config, config.path or path, log_format, workers)
    app = create_app(config)
    app.on_startup.append(drain_on_sigterm)
    if is_worker:
        app.on_startup.append(follow_parent)
        app.on_response_prepare.append(add_worker_header)
    _banner(
        f"lollms-server {__version__} on http://{config.host}:{config.port} "
        f"(config {config.path}, data {config.data_dir}, pid {os.getpid()})"
    )
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        handler_cancellation=True,
        lingering_time=LINGERING_S,
        shutdown_timeout=1.0,  # after the drain (drain_on_sigterm) nothing should be in flight
        print=None,
        access_log=None,  # the observability middleware logs each request as one JSON line
        reuse_port=is_worker or None,  # the workers of `--workers N` share the port
    )
    return 0


def _supervise(config: Config, path: Path, log_format: str | None, workers: int) -> int:
    from .plugins import load_plugins
    from .workers import Supervisor, check_workers, worker_command

    check_workers(config, load_plugins(), workers)
    _banner(
        f"lollms-server {__version__}: {workers} workers on http://{config.host}:{config.port} "
        f"(config {path}, supervisor pid {os.getpid()})"
    )
    command = worker_command(path, config.host, config.port, log_format)
    return Supervisor(command, workers).run()


def _banner(line: str) -> None:
    """The start-up line, a log line like the others (JSON with `log_format = "json"`, where
    journald and `docker logs` merge stdout and stderr; lost like them on a full disk)."""
    logging.getLogger("lollms_server.cli").info("%s", line)


if __name__ == "__main__":
    raise SystemExit(main())
