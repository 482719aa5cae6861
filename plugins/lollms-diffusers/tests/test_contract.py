"""The core's contract kit against the binding with the tiny pipelines as its real backend.

The "backend" is torch + diffusers running the tiny random-weight pipelines that the session
fixture builds (see conftest); if they cannot be built, `--backend=require` fails these tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from lollms_diffusers import DiffusersBinding

from lollms_server.testing import ImageContract, LifecycleContract, ServerContract

from .conftest import AUDIO, SD, VIDEO, tiny_settings


class TestDiffusers(ImageContract, LifecycleContract, ServerContract):
    """Images (deterministic), health, models, load/unload, and the app round trip (tti)."""

    binding_class = DiffusersBinding
    instance_name = "diffusers"
    model = SD
    deterministic_images = True
    server_generation_type = "tti"

    @pytest.fixture
    def binding_settings(self, tiny_models: Path) -> Mapping[str, Any]:
        """The tiny models folder."""
        return tiny_settings(tiny_models)


class TestDiffusersVideo(LifecycleContract, ServerContract):
    """The app round trip of text-to-video, load/unload of the video model."""

    binding_class = DiffusersBinding
    instance_name = "diffusers"
    model = VIDEO
    server_generation_type = "ttv"

    @pytest.fixture
    def binding_settings(self, tiny_models: Path) -> Mapping[str, Any]:
        """The tiny models folder."""
        return tiny_settings(tiny_models)


class TestDiffusersSound(LifecycleContract, ServerContract):
    """The app round trip of text-to-sound, load/unload of the sound model."""

    binding_class = DiffusersBinding
    instance_name = "diffusers"
    model = AUDIO
    server_generation_type = "ttm"

    @pytest.fixture
    def binding_settings(self, tiny_models: Path) -> Mapping[str, Any]:
        """The tiny models folder."""
        return tiny_settings(tiny_models)
