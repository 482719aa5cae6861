"""A truncated GGUF's load error over every face: a user key never sees the server's folders."""

from __future__ import annotations

import re
from pathlib import Path

from lollms_llamacpp import LlamaCppBinding
from lollms_llamacpp.tiny_gguf import write_tiny_gguf

from lollms_server.keys import KEYSTORE
from lollms_server.testing import serve_binding
from lollms_server.testing.server import Client

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
LOLLMS = {"binding_name": "local", "model_name": "cut",
          "input_data": [{"type": "text", "role": "user_prompt", "data": "hi"}]}  # fmt: skip
STREAM_URL = re.compile(r'sse-connect="(/playground/streams/[^"]+)"')


async def _answers(client: Client, key: str) -> dict[str, str]:
    """What each face answers `key` for the broken model, streamed and not."""
    auth = {"Authorization": f"Bearer {key}"}
    calls = {
        "openai": ("/v1/chat/completions", {"model": "local/cut", **CHAT}),
        "openai-stream": ("/v1/chat/completions", {"model": "local/cut", **CHAT, "stream": True}),
        "ollama": ("/api/chat", {"model": "local/cut", **CHAT, "stream": False}),
        "ollama-stream": ("/api/chat", {"model": "local/cut", **CHAT}),
        "lollms": ("/api/v1/generate", LOLLMS),
        "lollms-stream": ("/api/v1/generate", {**LOLLMS, "stream": True}),
    }
    answers = {}
    for face, (path, body) in calls.items():
        response = await client.post(path, json=body, headers=auth)
        answers[face] = f"{response.status} {await response.text()}"
    page = await client.post(
        "/playground/chat", data={"prompt": "hi", "model": "local/cut"}, headers=auth
    )
    answers["page"] = f"{page.status} {await page.text()}"
    stream_url = STREAM_URL.search(answers["page"])  # the page's stream, where one starts
    if stream_url:
        answers["page"] = await (await client.get(stream_url.group(1), headers=auth)).text()
    return answers


async def test_a_user_key_sees_file_names_an_admin_key_the_paths(tmp_path: Path) -> None:
    """llama.cpp names the file it failed to load by its absolute path. Before, every face
    sent that path (the data dir, the models folder) to any key; a user key now reads only
    the file name, an admin key the whole path, on JSON errors, streams and pages."""
    models = tmp_path / "models"
    models.mkdir()
    write_tiny_gguf(tmp_path / "whole.gguf", seed=0)
    (models / "cut.gguf").write_bytes((tmp_path / "whole.gguf").read_bytes()[:300_000])
    settings = {"models_folders": [str(models)], "n_ctx": 256, "n_parallel": 1, "n_threads": 1}
    async with serve_binding(LlamaCppBinding, "local", settings, tmp_path / "data") as client:
        store = client.server.app[KEYSTORE]
        user, _ = await store.create("user", "user")
        admin, _ = await store.create("admin", "admin")
        for face, text in (await _answers(client, user)).items():
            assert "cut.gguf" in text, (face, text)  # the cause still names the file
            assert str(tmp_path) not in text and str(models) not in text, (face, text)
        for face, text in (await _answers(client, admin)).items():
            assert str(models / "cut.gguf") in text, (face, text)


async def test_listing_and_health_errors_show_a_user_key_no_folder(tmp_path: Path) -> None:
    """A models folder that does not exist: listings and health name it. Before, a user key
    read the absolute path in `list_models` errors, `list_active_bindings` health, the
    dashboard and the bindings page; now the folder's last name only, an admin the path."""
    gone = tmp_path / "srv-data" / "models"
    settings = {"models_folders": [str(gone)], "n_threads": 1}
    async with serve_binding(LlamaCppBinding, "local", settings, tmp_path / "data") as client:
        store = client.server.app[KEYSTORE]
        user, _ = await store.create("user", "user")
        admin, _ = await store.create("admin", "admin")
        for key, shows_path in ((user, False), (admin, True)):
            auth = {"Authorization": f"Bearer {key}"}
            shown = {}
            listed = await (await client.get("/api/v1/list_models", headers=auth)).json()
            shown["list_models"] = str(listed["errors"])
            active = await client.get("/api/v1/list_active_bindings", headers=auth)
            shown["health"] = str((await active.json())["bindings"]["local"]["health"])
            for page in ("/", "/bindings"):
                shown[page] = await (await client.get(page, headers=auth)).text()
            for where, text in shown.items():  # the error's words (the settings list folders)
                assert "no models folder" in text, (where, text)
                assert (f"exists ({gone})" in text) is shows_path, (where, key == admin, text)
                assert shows_path or "exists (models)" in text, (where, text)
