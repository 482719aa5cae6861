"""CPU of the core's generation pipeline alone, per 20-chunk stream and per whole answer.

Builds the real app (default config, one `echo` instance with no token delay) in this
process, starts its services (audit, metrics, scheduler...) without a socket, and runs
`--count` generations of a 20-token prompt through `GenerationService`: streamed (every chunk
read, as a face reads them) and whole (`run`). Prints the process CPU per generation; the
HTTP faces' cost comes on top (bench/overhead.py measures the whole server).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from aiohttp import web

from lollms_server.app import create_app
from lollms_server.bindings import ChatMessage
from lollms_server.config import parse_config
from lollms_server.keys import GENERATION, REGISTRY
from lollms_server.security.principal import Principal, set_current

PROMPT = " ".join(f"w{i}" for i in range(20))  # echo answers it in 20 chunks


async def measure(count: int, data_dir: Path) -> dict[str, float]:
    """Milliseconds of CPU per streamed and per whole generation."""
    config = parse_config(
        {
            "server": {"data_dir": str(data_dir)},
            "bindings": {"echo": {"type": "echo", "default_model": "echo", "delay_ms": 0}},
            "defaults": {"ttt": "echo"},
        }
    )
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    try:
        app = runner.app
        service, registry = app[GENERATION], app[REGISTRY]
        set_current(Principal(role="admin", name="bench", local=True))
        target = await registry.resolve("ttt", "echo", "echo")
        messages = [ChatMessage("user", PROMPT)]

        async def streamed() -> None:
            prepared = await service.prepare(
                face="bench", generation_type="ttt", target=target, messages=messages
            )
            chunks = 0
            async for chunk in service.stream(prepared):
                chunks += chunk.type == "chunk"
            assert chunks == 20, chunks

        async def whole() -> None:
            prepared = await service.prepare(
                face="bench", generation_type="ttt", target=target, messages=messages
            )
            await service.run(prepared)

        figures = {}
        for name, one in (("stream", streamed), ("whole", whole)):
            for _ in range(50):  # warm-up
                await one()
            started = time.process_time()
            for _ in range(count):
                await one()
            figures[name] = (time.process_time() - started) * 1000 / count
        return figures
    finally:
        await runner.cleanup()


def main() -> None:
    """Run and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000, help="generations of each kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        figures = asyncio.run(measure(args.count, Path(folder)))
    for name, ms in figures.items():
        print(f"{name}: {ms:.3f} ms CPU per generation (pipeline only, {args.count} runs)")


if __name__ == "__main__":
    main()
