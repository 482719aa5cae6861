"""lollms-server: one server in front of many AI backends."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lollms-server")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
