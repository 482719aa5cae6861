"""What a key is charged, and what it is told, against a real `lollms-server` process: a whole
answer whose client left while the backend worked on it, and the X-RateLimit-* headers."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from lollms_server.testing.process import SERVER_COMMAND, lollms_process, server_env

FOREIGN = {"Host": "evil.example"}  # not this machine: the request needs a key
PROMPT = "one two three four five six seven eight nine ten"  # 10 echo tokens, 48 characters


@contextmanager
def echo_server(tmp_path: Path, delay_ms: int = 200) -> Iterator[tuple[str, Path]]:
    """A server with one echo instance (`slow` waits `delay_ms` per token) and one slot."""
    config = (
        f'[bindings.echo]\ntype = "echo"\ndefault_model = "echo"\ndelay_ms = {delay_ms}\n'
        'max_concurrent = 1\n\n[defaults]\nttt = "echo"\n'
    )
    with lollms_process(tmp_path, config) as running:
        yield running.url, tmp_path


def make_key(folder: Path, *options: str) -> dict[str, str]:
    """Headers of a new user key made with the CLI, sent from another machine."""
    done = subprocess.run(
        [*SERVER_COMMAND, "--config", str(folder / "lollms.toml"), "keys", "create",
         "--name", uuid.uuid4().hex[:8], "--role", "user", *options],
        env=server_env(folder / "data"), capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return {**FOREIGN, "X-API-Key": done.stdout.strip()}


def chat(max_tokens: int, model: str = "echo/slow", stream: bool = False) -> dict[str, Any]:
    """An OpenAI chat body of PROMPT."""
    messages = [{"role": "user", "content": PROMPT}]
    return {"model": model, "messages": messages, "max_tokens": max_tokens, "stream": stream}


async def leave_after(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> None:
    """Send a request and leave (close the connection) 0.5 s later, before its answer."""
    try:
        async with asyncio.timeout(0.5):
            async with session.post(url, json=body, headers=headers) as response:
                await response.read()
    except TimeoutError:
        return
    raise AssertionError("the answer came before the client left")


async def test_a_whole_answer_left_mid_generation_is_charged_its_reservation(
    tmp_path: Path,
) -> None:
    """A non-streamed generation whose client leaves while the backend works on it is charged
    its reservation, like a stream cut short: before, it was charged nothing, so a key could
    keep a model busy without end (6 x 2 s of echo/slow on a 100-token budget)."""
    with echo_server(tmp_path) as (base, folder):
        url = f"{base}/v1/chat/completions"
        key = make_key(folder, "--tpm", "100")  # each request reserves 10 + 12 tokens
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                await leave_after(session, url, chat(10), key)
            await asyncio.sleep(0.5)  # the last cancellation is settled
            after = await session.post(url, json=chat(1, "echo/echo"), headers=key)
            assert after.status == 429, await after.text()  # 5 x 22 charged, over 100

            # a request that leaves while it waits in the queue used nothing: charged nothing
            queued = make_key(folder, "--tpm", "20")
            local = {"model": "echo/slow", "messages": [{"role": "user", "content": "a b c"}]}
            holder = asyncio.ensure_future(session.post(url, json=local))  # the one slot, 0.6 s
            await asyncio.sleep(0.1)
            await leave_after(session, url, chat(10), queued)
            await (await holder).read()
            served = await session.post(url, json=chat(1, "echo/echo"), headers=queued)
            assert served.status == 200, await served.text()


async def test_streamed_answers_carry_the_rate_limit_headers(tmp_path: Path) -> None:
    """A streamed answer tells its key's rpm like a whole one, on every face (before: the
    headers were added after the handler, when a stream's headers had long been sent)."""
    text = [{"role": "user", "content": "hi"}]
    lollms = {"model_name": "echo/echo", "input_data": [{"type": "text", "data": "hi"}]}
    streams = [
        ("/v1/chat/completions", {"model": "echo/echo", "messages": text, "stream": True}),
        ("/v1/completions", {"model": "echo/echo", "prompt": "hi", "stream": True}),
        ("/v1/responses", {"model": "echo/echo", "input": "hi", "stream": True}),
        ("/api/chat", {"model": "echo/echo", "messages": text}),
        ("/api/generate", {"model": "echo/echo", "prompt": "hi"}),
        ("/api/v1/generate", {**lollms, "stream": True}),
    ]
    with echo_server(tmp_path) as (base, folder):
        key = make_key(folder, "--rpm", "50")
        async with aiohttp.ClientSession() as session:
            for index, (path, body) in enumerate(streams):
                async with session.post(base + path, json=body, headers=key) as response:
                    assert response.status == 200, await response.text()
                    await response.read()
                    limits = {
                        name: response.headers.get(f"X-RateLimit-{name}")
                        for name in ("Limit", "Remaining")
                    }
                    assert limits == {"Limit": "50", "Remaining": str(49 - index)}, path
                    assert float(response.headers["X-RateLimit-Reset"]) > 0, path


def generation_statuses(folder: Path, key_id: str) -> list[int]:
    """The statuses of a key's `generation` audit rows, oldest first (read from the file)."""
    db = sqlite3.connect(folder / "data" / "lollms.sqlite")
    try:
        rows = db.execute(
            "SELECT status FROM audit WHERE event = 'generation' AND key_id = ? ORDER BY id",
            (key_id,),
        )
        return [status for (status,) in rows]
    finally:
        db.close()


async def test_a_generation_refused_by_the_token_budget_is_audited(tmp_path: Path) -> None:
    """A 429 of the token budget leaves a `generation` row like one of the concurrency limit
    (before: none, so the audit log could not say why a key's requests were refused)."""
    with echo_server(tmp_path, delay_ms=300) as (base, folder):
        url = f"{base}/v1/chat/completions"
        key = make_key(folder, "--tpm", "20", "--concurrent", "1")  # 15 tokens reserved each
        key_id = key["X-API-Key"].split("_")[1]
        async with aiohttp.ClientSession() as session:
            first = asyncio.ensure_future(session.post(url, json=chat(2), headers=key))
            await asyncio.sleep(0.2)  # it runs (2 x 300 ms) and holds the key's one slot
            busy = await session.post(url, json=chat(2), headers=key)
            assert busy.status == 429 and "at once" in await busy.text()
            assert (await first).status == 200  # 12 tokens charged
            second = await session.post(url, json=chat(2), headers=key)
            assert second.status == 200  # 24 charged: the budget is spent
            spent = await session.post(url, json=chat(2), headers=key)
            assert spent.status == 429 and "token limit" in await spent.text()
        assert generation_statuses(folder, key_id) == [429, 200, 200, 429]


async def test_embeddings_report_the_tokens_their_key_is_charged(tmp_path: Path) -> None:
    """Embeddings are charged at 4 characters a token; their usage says so (before: 0 tokens
    reported while 12 were charged, so a client's own count never reached its budget)."""
    with echo_server(tmp_path) as (base, folder):
        key = make_key(folder, "--tpm", "100")
        body = {"model": "echo/echo", "input": PROMPT}  # 48 characters: 12 tokens
        reported = []
        async with aiohttp.ClientSession() as session:
            for _ in range(20):
                async with session.post(f"{base}/v1/embeddings", json=body, headers=key) as answer:
                    if answer.status != 200:
                        assert answer.status == 429, await answer.text()
                        break
                    usage = (await answer.json())["usage"]
                    assert usage == {"prompt_tokens": 12, "total_tokens": 12}
                    reported.append(usage["total_tokens"])
            ollama = {"model": "echo/echo", "input": [PROMPT, "a b"]}
            other = make_key(folder, "--tpm", "100")
            async with session.post(f"{base}/api/embed", json=ollama, headers=other) as answer:
                assert (await answer.json())["prompt_eval_count"] == 13  # 51 characters
        assert 100 <= sum(reported) <= 100 + 12  # the budget, reached as reported


async def test_a_token_limit_429_says_the_token_budget_in_headers(tmp_path: Path) -> None:
    """A 429 of the token budget carries OpenAI's token headers (before: `Retry-After` only,
    though the README promised the X-RateLimit-* headers on every limit's 429)."""
    with echo_server(tmp_path) as (base, folder):
        key = make_key(folder, "--tpm", "20")
        url = f"{base}/v1/chat/completions"
        async with aiohttp.ClientSession() as session:
            spent = await session.post(url, json=chat(10, "echo/echo"), headers=key)
            assert spent.status == 200  # 20 tokens: the budget is spent
            refused = await session.post(url, json=chat(10, "echo/echo"), headers=key)
            assert refused.status == 429, await refused.text()
            headers = refused.headers
            assert headers["X-RateLimit-Limit-Tokens"] == "20"
            assert headers["X-RateLimit-Remaining-Tokens"] == "0"
            assert 50 < float(headers["X-RateLimit-Reset-Tokens"]) <= 60
            assert 50 < int(headers["Retry-After"]) <= 60
