"""lollms-remote: another lollms-server (a node) as a backend of this one (the gateway)."""

from __future__ import annotations

from .binding import LollmsRemoteBinding

__all__ = ["LollmsRemoteBinding"]
__version__ = "0.1.0"
