"""lollms-audio: local speech for lollms-server (Piper and espeak-ng voices, whisper models)."""

from __future__ import annotations

from .binding import AudioBinding

__all__ = ["AudioBinding"]
__version__ = "0.1.0"
