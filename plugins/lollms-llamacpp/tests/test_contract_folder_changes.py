"""The models folder changing while the server runs: a model added is listed and served
without a restart; a loaded model whose file is removed still shows where loaded models show
(it runs and takes its memory) until it is unloaded, then it is gone."""

from __future__ import annotations

from pathlib import Path

from lollms_llamacpp import LlamaCppBinding
from lollms_llamacpp.tiny_gguf import write_tiny_gguf

from lollms_server.testing import serve_binding, within
from lollms_server.testing.server import Client


def ask(model: str) -> dict[str, object]:
    return {"model": f"local/{model}", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2}  # fmt: skip


async def running(served: Client) -> list[str]:
    response = await served.get("/api/ps")
    assert response.status == 200, await response.text()
    return [m["name"] for m in (await response.json())["models"]]


async def test_models_added_and_removed_while_serving(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    write_tiny_gguf(models / "first.gguf", seed=0)
    settings = {"models_folders": [str(models)], "n_ctx": 256, "n_parallel": 1, "n_threads": 1}
    async with serve_binding(
        LlamaCppBinding, "local", settings, tmp_path / "data", "first"
    ) as served:
        write_tiny_gguf(models / "added.gguf", seed=1)
        tags = await (await served.get("/api/tags")).json()
        assert "local/added:latest" in [m["name"] for m in tags["models"]]
        answer = await within(60, served.post("/v1/chat/completions", json=ask("added")), "added")
        assert answer.status == 200, await answer.text()
        assert await running(served) == ["local/added:latest"]
        (models / "added.gguf").unlink()
        # still loaded and serving: /api/ps says so, as /api/v1/status does
        assert await running(served) == ["local/added:latest"]
        status = await (await served.get("/api/v1/status")).json()
        assert status["loaded"] == ["local/added"]
        unload = {"binding_name": "local", "model_name": "added"}
        assert (await served.post("/api/v1/unload_model", json=unload)).status == 200
        assert await running(served) == []
        gone = await served.post("/v1/chat/completions", json=ask("added"))
        assert gone.status == 404, await gone.text()
