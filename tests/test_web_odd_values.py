"""Pages and filters take any value a binding reports: numbers as strings, lists, None, HTML.

A binding's model details are arbitrary JSON and its `ModelInfo` fields are only typed hints:
every filter formats what it can and shows the rest as (escaped) text, and every page renders
with such a binding configured (before, `/models` answered 500 on an int detail).
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import jinja2
import pytest

from lollms_server.bindings import GENERATION_TYPES, Chunk, GenerationRequest, Health, ModelInfo
from lollms_server.builtin.echo import EchoBinding, speak
from lollms_server.hookspecs import hookimpl
from lollms_server.plugins import load_plugins
from lollms_server.web.filters import FILTERS

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
MARK = "<script>alert('odd')</script>"
JSON_VALUES: dict[str, Any] = {
    "int": 7,
    "negative": -12,
    "big": 10**30,
    "float": 1.5,
    "zero": 0,
    "none": None,
    "true": True,
    "false": False,
    "empty": "",
    "list": [1, "two", None, {"three": 3}],
    "empty_list": [],
    "dict": {"nested": {"deeper": [1, 2, {"x": None}]}, "n": 1},
    "empty_dict": {},
    "long": "word " * 2000,
    "html": MARK,
    "numeric_text": "1536",
    "unicode": "modèle 模型 🦙",
}
ODD_VALUES: list[Any] = [
    *JSON_VALUES.values(),
    math.nan,
    math.inf,
    -math.inf,
    10**400,
    b"\x00\xff",
    (1, 2),
    {1: "int key", "s": "str key"},
    {("tuple", "key"): 1},
    {"a", "b"},
    object(),
    -1e308,
    "-3.5e2",
    "1e999",
]
ODD_MODEL = ModelInfo(
    name="odd-model",
    family=["llama", 2],  # type: ignore[arg-type]
    size_bytes="12 GB",  # type: ignore[arg-type]
    parameters=1.5e9,  # type: ignore[arg-type]
    quantization={"bits": 4},  # type: ignore[arg-type]
    context_length="4k",  # type: ignore[arg-type]
    capabilities=frozenset({"ttt", "tti", "tts", "stt", "stream"}),
    memory_bytes=-1,
    loaded="sometimes",  # type: ignore[arg-type]
    details=JSON_VALUES,
)


@pytest.mark.parametrize("name", sorted(FILTERS))
@pytest.mark.parametrize("value", ODD_VALUES, ids=lambda v: type(v).__name__)
def test_every_filter_takes_any_value(name: str, value: Any) -> None:
    """Each filter returns text for any value (with any second argument), never raises."""
    flt = FILTERS[name]
    result = flt(value, value) if name == "data_url" else flt(value)
    assert isinstance(result, str)


def test_filters_format_what_they_can() -> None:
    """Numbers in strings are numbers; what is not a number is shown as it is."""
    f = FILTERS
    assert f["bytes"]("1536") == "1.5 KiB" and f["bytes"]("12 GB") == "12 GB"
    assert f["bytes"](math.nan) == "nan" and f["bytes"](True) == "True"
    assert f["count"](1.5e9) == "1.5B" and f["count"]([1, 2]) == "[1, 2]"
    assert f["duration"]("90") == "1m 30s" and f["duration"](-61) == "-1m 01s"
    assert f["timestamp"](10**400) == str(10**400) and f["timestamp"]("soon") == "soon"
    assert f["clip"](12345, 3) == "12…" and f["clip"](None) == ""
    assert f["fixed"](12.345) == "12.3" and f["fixed"]("fast") == "fast"
    assert f["clip"]({"a": 1}) == '{"a": 1}' and len(f["clip"]("x" * 500, 300)) == 300
    assert f["pretty_json"]({1: "a", "b": 2}) and f["extension"](None) == "bin"
    assert f["extension"]("image/../../x") == "bin"


@pytest.mark.parametrize("value", ODD_VALUES, ids=lambda v: type(v).__name__)
def test_model_partial_renders_any_detail(value: Any) -> None:
    """`_models.html` renders a row whose columns and details hold the odd value."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters.update(FILTERS)
    row = {key: value for key in ("binding_instance", "family", "parameters", "size_bytes")}
    row |= {"quantization": value, "context_length": value, "memory_bytes": value}
    row |= {"features": value, "loaded": value, "compatible": value, "id": "i/m"}
    row["details"] = {"odd": value, "html": MARK}
    columns = [(key, key) for key in row if key not in ("id", "details")]
    group = {"type": "ttt", "label": "Text", "rows": [row], "columns": columns}
    context = {"groups": [group], "errors": [], "q": "", "type": "", "total": 1}
    html = env.get_template("_models.html").render(context)
    assert "i/m" in html and MARK not in html


class OddBinding(EchoBinding):
    """Echo that reports a model whose every field and detail is an odd value."""

    name = "odd"
    title = "Odd values <b>bold</b>"
    description = MARK

    async def health(self) -> Health:
        """Up, with HTML in the detail and a latency that is not a number."""
        return Health("up", MARK, "fast")  # type: ignore[arg-type]

    async def list_models(self) -> list[ModelInfo]:
        """The odd model beside echo's own."""
        return [ODD_MODEL, *await super().list_models()]

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Echo's stream; every output carries odd metadata and an odd mime type parameter."""
        async for chunk in super().stream(request):
            if chunk.output is not None:
                mime = f'{chunk.output.mime_type}; name="{MARK}"'
                odd = replace(chunk.output, mime_type=mime, metadata={"seed": JSON_VALUES["dict"]})
                chunk = replace(chunk, output=odd, metadata=JSON_VALUES)
            yield chunk


class OddPlugin:
    """Registers the odd binding."""

    @hookimpl
    def register_bindings(self) -> list[type[EchoBinding]]:
        return [OddBinding]


PAGES = (
    "/",
    "/bindings",
    "/models",
    "/models?q=odd",
    "/models?type=tti",
    "/personalities",
    "/functions",
    "/playground/chat",
    "/playground/image",
    "/playground/audio",
    "/admin/keys",
    "/admin/audit",
    "/api-docs",
)


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "partial"])
async def test_every_page_renders_with_odd_binding_values(
    htmx: bool, make_config: Any, make_client: Any
) -> None:
    """Every page (and its htmx partial) answers 200 with the odd binding, its HTML escaped."""
    config = make_config(
        {
            "bindings": {
                "echo": {"type": "echo", "default_model": "echo"},
                "odd": {"type": "odd", "default_model": "echo"},
            },
            "defaults": dict.fromkeys(GENERATION_TYPES, "odd"),
        }
    )
    client = await make_client(config, plugins=load_plugins({"odd": OddPlugin()}))
    headers = {"HX-Request": "true"} if htmx else {}
    for path in PAGES:
        response = await client.get(path, headers=headers)
        body = await response.text()
        assert response.status == 200, f"{path}: {response.status}\n{body[:2000]}"
        assert MARK not in body, f"{path} let the binding's HTML through"
    models = await (await client.get("/models", headers=headers)).text()
    assert "odd/odd-model" in models and "12 GB" in models and "1.5B" in models
    forms: dict[str, tuple[dict[str, str], str]] = {
        "/playground/chat": ({"prompt": "hello odd"}, "hello odd"),
        "/playground/image": ({"prompt": "odd", "width": "16", "height": "16"}, "<img"),
        "/playground/speech": ({"text": "odd"}, "<audio"),
    }
    for path, (fields, shown) in forms.items():
        response = await client.post(path, data=fields, headers=headers)
        body = await response.text()
        assert response.status == 200, f"{path}: {response.status}\n{body[:2000]}"
        if stream := re.search(r'sse-connect="([^"]+)"', body):  # htmx: the result comes by SSE
            body += await (await client.get(stream.group(1))).text()
        assert shown in body and MARK not in body, f"{path}:\n{body[:2000]}"
    upload = aiohttp.FormData()
    upload.add_field("file", speak("odd"), filename="odd.wav", content_type="audio/wav")
    response = await client.post("/playground/transcribe", data=upload, headers=headers)
    assert response.status == 200 and MARK not in await response.text()
