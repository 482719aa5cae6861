"""Parameters nothing reads (a typo such as `temprature`, a text setting sent with an image
request) are passed on as before, and named in `X-Lollms-Ignored-Fields` as
`parameters.<name>` when the binding says which parameters it reads."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from lollms_server.builtin.echo import EchoBinding

Client = TestClient[Any, Any]
HEADER = "X-Lollms-Ignored-Fields"


def body(kind: str, **parameters: Any) -> dict[str, Any]:
    """A generate body for echo."""
    text = {"type": "text", "role": "user_prompt", "data": "a red circle"}
    return {"input_data": [text], "generation_type": kind, "parameters": parameters}


async def test_a_typo_in_parameters_is_named(make_client: Any) -> None:
    """`temprature` (a typo) and `sharpness` reach no code; `max_tokens` and `seed` do."""
    client: Client = await make_client()
    answer = await client.post(
        "/api/v1/generate", json=body("ttt", temprature=0.2, max_tokens=5, seed=1, sharpness=3)
    )
    assert answer.status == 200, await answer.text()
    named = answer.headers[HEADER].split(", ")
    assert set(named) == {"parameters.temprature", "parameters.sharpness"}, named
    streamed = await client.post(
        "/api/v1/generate", json={**body("ttt", temprature=0.2), "stream": True}
    )
    assert streamed.status == 200 and streamed.headers[HEADER] == "parameters.temprature"
    clean = await client.post("/api/v1/generate", json=body("ttt", max_tokens=5, keep_alive=10))
    assert clean.status == 200 and HEADER not in clean.headers
    image = await client.post("/api/v1/generate", json=body("tti", width=16, steps=2))
    assert image.status == 200 and image.headers[HEADER] == "parameters.steps"


async def test_a_binding_that_does_not_say_gets_no_names(
    make_client: Any, monkeypatch: Any
) -> None:
    """A binding that does not declare what it reads may read anything: nothing is named."""
    monkeypatch.setattr(EchoBinding, "parameters_read", None)
    client: Client = await make_client()
    answer = await client.post("/api/v1/generate", json=body("ttt", temprature=0.2))
    assert answer.status == 200 and HEADER not in answer.headers
