"""lollms-ollama: the models of an Ollama server for lollms-server, via the official client."""

from __future__ import annotations

from .binding import OllamaBinding

__all__ = ["OllamaBinding"]
__version__ = "0.1.0"
