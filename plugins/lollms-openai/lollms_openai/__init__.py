"""lollms-openai: lollms-server binding for any OpenAI-compatible server."""

from __future__ import annotations

from .binding import OpenAIBinding

__all__ = ["OpenAIBinding"]
__version__ = "0.1.0"
