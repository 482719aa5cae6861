"""Real llama.cpp loads: per-model extra_args, and a failed load's 502 naming its root cause."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from lollms_llamacpp import LlamaCppBinding

from lollms_server.testing import serve_binding

from .conftest import TINY, TINY_EMBED

#: llama.cpp's own words when a q8_0 K cache meets the tiny models' head size of 16.
CAUSE = "K cache type q8_0 with block size 32 does not divide n_embd_head_k=16"


async def test_extra_args_per_model_and_the_root_cause_of_a_failed_load(
    tiny_models: Path, tmp_path: Path
) -> None:
    """A global q8_0 K cache breaks models whose head size is 16: the embedding model's own
    entry sets F16 and it serves; the chat model fails with a 502 that says why."""
    settings = {
        "models_folders": [str(tiny_models)],
        "embedding_models": [TINY_EMBED],
        "n_ctx": 512,
        "n_parallel": 1,
        "n_threads": 2,
        "extra_args": {"cache_type_k": "GGML_TYPE_Q8_0"},
        "model_extra_args": {TINY_EMBED: {"cache_type_k": "GGML_TYPE_F16"}},
    }
    async with serve_binding(LlamaCppBinding, "local", settings, tmp_path / "data") as client:
        embedded = await client.post(
            "/v1/embeddings", json={"model": f"local/{TINY_EMBED}", "input": ["hello world"]}
        )
        assert embedded.status == 200, await embedded.text()
        assert len((await embedded.json())["data"][0]["embedding"]) == 64
        failed = await client.post(
            "/v1/chat/completions",
            json={
                "model": f"local/{TINY}",
                "messages": [{"role": "user", "content": "hello"}],
                "max_tokens": 4,
            },
        )
        assert failed.status == 502, await failed.text()
        message = (await failed.json())["error"]["message"]
        cause = message.split("cause: ", 1)[-1].split(" | ")[0]
        assert CAUSE in cause, message  # the first error line, not the cascade after it
        assert f"model {TINY!r}" in message and "while starting" in message
        assert "Traceback" not in message


async def test_a_broken_model_does_not_open_the_circuit_of_its_instance(
    tiny_models: Path, tmp_path: Path
) -> None:
    """Six requests for a truncated GGUF each get the 502 naming its cause; the other models
    of the instance keep serving. Before, the fifth failed load opened the instance's circuit:
    every model of it (the healthy ones too) got 503 'circuit open' for cooldown_s."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "whole.gguf").write_bytes((tiny_models / f"{TINY}.gguf").read_bytes())
    (models / "cut.gguf").write_bytes((tiny_models / f"{TINY}.gguf").read_bytes()[:300_000])
    settings = {"models_folders": [str(models)], "n_ctx": 256, "n_parallel": 1, "n_threads": 1}
    async with serve_binding(LlamaCppBinding, "local", settings, tmp_path / "data") as client:

        async def ask(model: str) -> tuple[int, str]:
            body = {"model": f"local/{model}", "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 2}  # fmt: skip
            response = await client.post("/v1/chat/completions", json=body)
            return response.status, await response.text()

        for _ in range(6):
            status, text = await ask("cut")
            assert status == 502 and "while starting" in text, text
        status, text = await ask("whole")
        assert status == 200, text


async def test_a_model_that_cannot_start_logs_one_line_per_request(
    tiny_models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A user's request for a truncated GGUF logs one error line naming the model and the root
    cause, not llama.cpp's cascade of error lines (9 per request for a cut SmolLM2); the
    worker's lines stay at debug level for whoever turns that on."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "cut.gguf").write_bytes((tiny_models / f"{TINY}.gguf").read_bytes()[:300_000])
    settings = {"models_folders": [str(models)], "n_ctx": 256, "n_parallel": 1, "n_threads": 1}
    async with serve_binding(LlamaCppBinding, "local", settings, tmp_path / "data") as client:
        body = {"model": "local/cut", "messages": [{"role": "user", "content": "hi"}]}
        for attempt in range(2):
            caplog.clear()
            caplog.set_level(logging.DEBUG)
            response = await client.post("/v1/chat/completions", json=body)
            assert response.status == 502, await response.text()
            loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(loud) == 1, [r.getMessage() for r in loud]
            line = loud[0].getMessage()
            assert loud[0].levelno == logging.ERROR and "model 'cut'" in line, line
            assert "while starting: cause: " in line, line
            worker = [r for r in caplog.records if r.getMessage().startswith("[cut] ")]
            assert worker and all(r.levelno == logging.DEBUG for r in worker), attempt
