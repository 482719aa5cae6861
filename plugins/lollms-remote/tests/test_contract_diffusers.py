"""The kit's image contract for the `lollms` binding over a node running a real (tiny, random)
Stable Diffusion pipeline through lollms-diffusers: the node's PNG bytes come back unchanged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from lollms_remote import LollmsRemoteBinding

from lollms_server.testing import ImageContract

from .conftest import Node


class TestRemoteDiffusersNode(ImageContract):
    """Images from a real diffusers pipeline on the node."""

    binding_class = LollmsRemoteBinding
    model = "diffusers/tiny-sd"
    deterministic_images = True

    @pytest.fixture
    def binding_settings(self, diffusers_node: Node) -> Mapping[str, Any]:
        """The diffusers node and its admin key."""
        return diffusers_node.settings()
