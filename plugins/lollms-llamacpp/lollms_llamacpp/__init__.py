"""lollms-llamacpp: local GGUF models for lollms-server, served by managed llama.cpp processes.

The binding is imported lazily: each model's worker process (`python -m lollms_llamacpp.worker`)
imports this package too, and must not pay for lollms_server, aiohttp and marshmallow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .binding import LlamaCppBinding

__all__ = ["LlamaCppBinding"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "LlamaCppBinding":
        from .binding import LlamaCppBinding

        return LlamaCppBinding
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
