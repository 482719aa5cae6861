"""lollms-llamacpp: local GGUF models for lollms-server, served by managed llama.cpp processes."""

from __future__ import annotations

from .binding import LlamaCppBinding

__all__ = ["LlamaCppBinding"]
__version__ = "0.1.0"
