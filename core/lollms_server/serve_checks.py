"""Start-up checks of `serve`: the listen address is free, and some binding instance exists."""

from __future__ import annotations

import logging
import socket

from .config import Config
from .errors import ConfigError

log = logging.getLogger(__name__)


def check_listen(host: str, port: int) -> None:
    """Raise ConfigError (one line naming the address) when `host:port` cannot be listened on,
    before any binding starts; the server binds the same way (SO_REUSEADDR)."""
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _name, address in addresses:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        what = "host" if isinstance(exc, socket.gaierror) else "port"  # the name, or the port
        raise ConfigError(
            f"cannot listen on {host}:{port}: {reason} (choose another with --{what}, "
            f"LOLLMS_{what.upper()} or [server] {what})"
        ) from exc


def warn_without_instances(config: Config) -> None:
    """Log a warning when no enabled binding instance is configured (nothing can generate)."""
    if not any(spec.enabled for spec in config.bindings.values()):
        log.warning(
            "no binding instance is configured in %s: every generation will fail; add a "
            "[bindings.<name>] section (`lollms-server plugins` lists the types)",
            config.path or "the config",
        )
