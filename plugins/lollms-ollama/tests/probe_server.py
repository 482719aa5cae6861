"""A real lollms-server process with one more binding type, `probe`: echo that can see images.

Run as `python probe_server.py --config lollms.toml`. A `probe` instance answers like echo,
prefixed with `saw <mime>:<sha256[:12]>` for each image it received, so tests can check that
image bytes cross the Ollama binding and the Ollama face intact.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from pathlib import Path

from aiohttp import web

from lollms_server.app import create_app
from lollms_server.bindings import Binding, GenerationRequest, ModelInfo
from lollms_server.builtin.echo import EchoBinding
from lollms_server.config import load_config
from lollms_server.hookspecs import hookimpl
from lollms_server.plugins import load_plugins


class ProbeBinding(EchoBinding):
    """Echo with the vision capability; it describes the images it was given."""

    name = "probe"
    capabilities = EchoBinding.capabilities | {"vision"}

    async def list_models(self) -> list[ModelInfo]:
        """Echo's models, able to see images."""
        listed = await super().list_models()
        return [dataclasses.replace(m, capabilities=m.capabilities | {"vision"}) for m in listed]

    def _answer(self, request: GenerationRequest) -> str:
        images = [image for message in request.messages for image in message.images]
        seen = " ".join(
            f"saw {i.mime_type}:{hashlib.sha256(i.data).hexdigest()[:12]}" for i in images
        )
        text = super()._answer(request)
        return f"{seen} {text}" if seen else text


class ProbePlugin:
    """Registers the probe binding type."""

    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        """The probe binding type."""
        return [ProbeBinding]


def main() -> None:
    """Serve the config's instances, with the probe type available."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    config = load_config(parser.parse_args().config)
    app = create_app(config, load_plugins({"probe-test": ProbePlugin()}))
    web.run_app(app, host=config.host, port=config.port, handler_cancellation=True, print=None)


if __name__ == "__main__":
    main()
