"""A key's token budget under a parallel burst on a real chat model (a `lollms-server` process,
llama.cpp with SmolLM2): the prompt tokens a chat template adds count in the reservations."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import aiohttp

from lollms_server.testing.process import SERVER_COMMAND, lollms_process, server_env

from .conftest import SMOL

FOREIGN = {"Host": "evil.example"}  # not this machine: the request needs a key
BUDGET = 400
BODY = {
    "model": f"local/{SMOL}",
    "messages": [{"role": "user", "content": "Hi"}],  # 1 token by its characters; 31 real
    "max_tokens": 16,
}


def make_key(folder: Path) -> str:
    """A user key with a BUDGET-token tpm, made with the CLI."""
    made = subprocess.run(
        [*SERVER_COMMAND, "--config", str(folder / "lollms.toml"), "keys", "create",
         "--name", "burst", "--tpm", str(BUDGET)],
        env=server_env(folder / "data"), capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return made.stdout.strip()


async def test_a_burst_stays_within_the_budget_despite_the_chat_template(
    models_dir: Path, tmp_path: Path
) -> None:
    """SmolLM2's template adds a system prompt and role markers (31 prompt tokens for "Hi",
    estimated 1). Before, every reservation missed them: 24 parallel requests on a 400-token
    budget served about 1,000 tokens. Reservations now add what the model's last answer
    showed the template adds, so a burst serves at most the budget plus one request."""
    config = (
        f'[bindings.local]\ntype = "llamacpp"\nmodels_folders = ["{models_dir}"]\n'
        f'default_model = "{SMOL}"\nn_ctx = 2048\nn_parallel = 2\nn_threads = 2\n'
    )
    with lollms_process(tmp_path, config) as server:
        headers = {**FOREIGN, "Authorization": f"Bearer {make_key(tmp_path)}"}
        url = f"{server.url}/v1/chat/completions"
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def one() -> int:
                async with session.post(url, json=BODY, headers=headers) as response:
                    if response.status == 429:
                        return 0
                    assert response.status == 200, await response.text()
                    return int((await response.json())["usage"]["total_tokens"])

            first = await one()  # the model's first answer: its template's prompt tokens
            assert first > 30
            served = [first, *await asyncio.gather(*(one() for _ in range(24)))]
        assert sum(served) <= BUDGET + first, served
        assert sum(1 for tokens in served if tokens) >= 5  # the budget is really used
