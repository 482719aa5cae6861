"""What the server hands a binding instance when it builds one: the typed `BindingContext`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def default_data_dir() -> Path:
    """`$LOLLMS_DATA_DIR`, else `~/.lollms-server`."""
    env = os.environ.get("LOLLMS_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".lollms-server"


@dataclass(frozen=True)
class BindingContext:
    """The server's facts a binding needs at construction (the registry builds it from the
    config; a binding built without one gets the defaults)."""

    data_dir: Path = field(default_factory=default_data_dir)

    @property
    def models_dir(self) -> Path:
        """The data dir's models folder (`<data_dir>/models`, one subfolder per kind)."""
        return self.data_dir / "models"
