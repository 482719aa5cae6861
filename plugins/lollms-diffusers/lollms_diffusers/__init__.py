"""lollms-diffusers: local diffusion models (images, video, sound) for lollms-server."""

from __future__ import annotations

from .binding import DiffusersBinding

__all__ = ["DiffusersBinding"]
__version__ = "0.1.0"
