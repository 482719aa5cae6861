"""Request body codings: gzip, deflate and identity are decoded; any other is a 415."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest

from lollms_server.httpkit.body import BODY_ENCODINGS

RAW = {"bindings": {"echo": {"type": "echo"}}, "defaults": {"ttt": "echo"}}
BODY = json.dumps({"model": "echo/echo", "messages": [{"role": "user", "content": "hi"}]}).encode()
CODED = {"gzip": gzip.compress(BODY), "deflate": zlib.compress(BODY), "identity": BODY, "": BODY}
if "br" in BODY_ENCODINGS:  # aiohttp decodes br when Brotli is installed (it is here)
    import brotli

    CODED["br"] = brotli.compress(BODY)


@pytest.mark.parametrize("coding", sorted(CODED))
async def test_the_decoded_codings_still_work(
    make_client: Any, make_config: Any, coding: str
) -> None:
    client = await make_client(make_config(RAW))
    headers = {"Content-Type": "application/json", "Content-Encoding": coding}
    answer = await client.post("/v1/chat/completions", data=CODED[coding], headers=headers)
    assert answer.status == 200, await answer.text()
    assert (await answer.json())["choices"][0]["message"]["content"] == "hi"


@pytest.mark.parametrize("coding", ["compress", "x-gzip", "gzip, br", "zstd-ish", "Brotli"])
@pytest.mark.parametrize(
    ("path", "face"),
    [("/api/v1/generate", "lollms"), ("/v1/chat/completions", "openai"), ("/api/chat", "ollama")],
)
async def test_a_coding_the_server_does_not_decode_is_a_415(
    make_client: Any, make_config: Any, coding: str, path: str, face: str
) -> None:
    """Before, a coding aiohttp does not decode (`compress`, `x-gzip`, a list such as
    `gzip, br`) was read as plain bytes: plain JSON labelled `gzip, br` got a 200, and a real
    gzip-then-brotli body a 400 'malformed request body'. Now each is a 415 in the face's error
    shape naming the codings accepted, with `Accept-Encoding` (RFC 9110 15.5.16)."""
    client = await make_client(make_config(RAW))
    headers = {"Content-Type": "application/json", "Content-Encoding": coding}
    answer = await client.post(path, data=BODY, headers=headers)
    assert answer.status == 415, await answer.text()
    accepted = ", ".join(BODY_ENCODINGS)
    assert answer.headers["Accept-Encoding"] == accepted
    body = await answer.json()
    message = {"lollms": lambda: body["error"]["message"], "ollama": lambda: body["error"],
               "openai": lambda: body["error"]["message"]}[face]()  # fmt: skip
    assert accepted in message and repr(coding) in message, message
    if face == "lollms":
        assert body["error"]["type"] == "unsupported_media_type"
