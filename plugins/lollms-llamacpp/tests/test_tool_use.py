"""Chat template settings and the requests that must call a tool (no llama.cpp process)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from lollms_llamacpp import LlamaCppBinding
from lollms_llamacpp.settings import LlamaCppSettings
from lollms_llamacpp.tool_use import (
    TEMPLATES_DIR,
    call_start,
    prepare,
    template_problem,
    worker_args,
)
from lollms_llamacpp.worker import build_params, parse_args
from marshmallow import ValidationError

from lollms_server.bindings import ChatMessage, GenerationRequest
from lollms_server.errors import InvalidRequest, NotSupported

from .conftest import TINY

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
ADD = {"type": "function", "function": {"name": "add", "parameters": {}}}
START = "<tool_call>\n"


def ask(model: str = "m", **parameters: Any) -> GenerationRequest:
    """A one-message chat request with `parameters`."""
    return GenerationRequest("ttt", model, (ChatMessage("user", "hi"),), parameters=parameters)


def test_shipped_template_is_tool_capable_chatml() -> None:
    """chatml-tools is a ChatML template that lists tools and renders <tool_call> blocks."""
    text = (TEMPLATES_DIR / "chatml_tools.jinja").read_text()
    assert "<|im_start|>" in text and "<tools>" in text and "<tool_call>" in text
    assert worker_args("chatml-tools") == [
        "--chat-template-file",
        str(TEMPLATES_DIR / "chatml_tools.jinja"),
    ]


def test_template_values(tmp_path: Path) -> None:
    """A shipped name, an existing file or Jinja text is fine; anything else says why not."""
    file = tmp_path / "mine.jinja"
    file.write_text("{{ messages }}")
    assert template_problem("chatml-tools") is None
    assert template_problem(str(file)) is None
    assert template_problem("{% for m in messages %}{{ m.content }}{% endfor %}") is None
    problem = template_problem(str(tmp_path / "missing.jinja"))
    assert problem is not None and "chatml-tools" in problem
    assert worker_args(str(file)) == ["--chat-template-file", str(file)]
    assert worker_args("{{ x }}") == ["--chat-template", "{{ x }}"]
    assert worker_args(None) == []


def test_settings_validate_templates(tmp_path: Path) -> None:
    """Bad template values and extra_args.chat_template are refused when the config loads."""
    schema = LlamaCppSettings()
    loaded = schema.load({"chat_template": "chatml-tools", "chat_templates": {"a": "{{ x }}"}})
    assert loaded.chat_template == "chatml-tools"
    with pytest.raises(ValidationError, match="chat_template"):
        schema.load({"chat_template": str(tmp_path / "nope.jinja")})
    with pytest.raises(ValidationError, match="'a'"):
        schema.load({"chat_templates": {"a": "nope"}})
    with pytest.raises(ValidationError, match="chat_template setting"):
        schema.load({"extra_args": {"chat_template": "{{ x }}"}})


def test_template_per_model_and_worker_args(tmp_path: Path) -> None:
    """chat_templates wins over chat_template; the worker gets the file and Jinja on."""
    binding = LlamaCppBinding(
        "local",
        LlamaCppSettings().load(
            {"chat_template": "{{ messages }}", "chat_templates": {"smol": "chatml-tools"}}
        ),
    )
    assert binding.chat_template("smol") == "chatml-tools"
    assert binding.chat_template("other") == "{{ messages }}"
    assert LlamaCppBinding("x", LlamaCppSettings().load({})).chat_template("smol") is None
    args = parse_args(["--model", "m.gguf", *worker_args("chatml-tools")])
    params = build_params(args)
    assert params.use_jinja and "<tool_call>" in params.chat_template


def test_call_start() -> None:
    """tool_call_start wins; else the shipped template's marker; else none."""
    assert call_start("chatml-tools", None) == START
    assert call_start("chatml-tools", "") == ""
    assert call_start(None, "[TOOL_CALLS]") == "[TOOL_CALLS]"
    assert call_start("/some/file.jinja", None) == ""


@pytest.mark.parametrize("choice", [None, "auto", "none"])
def test_optional_calls_are_unchanged(choice: str | None) -> None:
    """Without a required call, the request goes to llama.cpp as it is."""
    request = ask(tools=[WEATHER], tool_choice=choice)
    assert prepare(request, START, "local") is request


def test_required_call_is_prefilled() -> None:
    """ "required": the reply starts with the call marker; one call: stop at a second one."""
    request = ask(tools=[WEATHER, ADD], tool_choice="required", stop="END")
    prepared = prepare(request, START, "local")
    assert prepared.messages[-1] == ChatMessage("assistant", START)
    assert prepared.parameters["tools"] == [WEATHER, ADD]
    assert prepared.parameters["stop"] == "END"  # several calls allowed
    single = prepare(
        ask(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False), START, "l"
    )
    assert single.parameters["stop"] == ["<tool_call>"]
    assert prepare(ask(tools=[WEATHER], tool_choice="required"), "", "l").messages == ask().messages


def test_named_call_becomes_required_with_that_tool() -> None:
    """A named function: only that tool, "required", a single call."""
    named = {"type": "function", "function": {"name": "get_weather"}}
    prepared = prepare(ask(tools=[ADD, WEATHER], tool_choice=named, stop=["x"]), START, "local")
    parameters = prepared.parameters
    assert parameters["tools"] == [WEATHER] and parameters["tool_choice"] == "required"
    assert parameters["parallel_tool_calls"] is False
    assert parameters["stop"] == ["x", "<tool_call>"]


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "add"}}])
def test_a_forced_call_drops_the_text_format(choice: Any) -> None:
    """llama.cpp cannot combine a response_format grammar with a required call's."""
    response_format = {"type": "json_object"}
    request = ask(tools=[ADD], tool_choice=choice, response_format=response_format)
    assert "response_format" not in prepare(request, START, "local").parameters
    optional = ask(tools=[ADD], tool_choice="auto", response_format=response_format)
    assert prepare(optional, START, "local").parameters["response_format"] == response_format


def test_own_prefill_is_kept() -> None:
    """A conversation already ending with an assistant message is not prefilled again."""
    request = GenerationRequest(
        "ttt",
        "m",
        (ChatMessage("user", "hi"), ChatMessage("assistant", "<tool_call>\n{")),
        parameters={"tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": False},
    )
    prepared = prepare(request, START, "local")
    assert prepared.messages == request.messages and "stop" not in prepared.parameters


@pytest.mark.parametrize(
    "choice",
    [
        {"type": "function", "function": {"name": "nope"}},
        {"type": "function"},
        {"type": "other", "function": {"name": "get_weather"}},
    ],
)
def test_bad_named_choice_is_a_400(choice: dict[str, Any]) -> None:
    """A named function that is not offered, or a malformed choice, is the client's error."""
    with pytest.raises(InvalidRequest) as caught:
        prepare(ask(tools=[WEATHER], tool_choice=choice), START, "local")
    assert caught.value.param == "tool_choice"


async def test_tools_a_template_would_drop_are_a_501(tiny_models: Path) -> None:
    """Tools for a model whose template does not render them: a 501 naming the fix, before
    any process starts; "none", a raw prompt or a tools template go through."""
    settings = LlamaCppSettings()
    own = LlamaCppBinding("local", settings.load({"models_folders": [str(tiny_models)]}))
    with pytest.raises(NotSupported) as caught:
        await own._prepared(ask(TINY, tools=[WEATHER], tool_choice="required"))
    assert caught.value.status == 501 and caught.value.param == "tools"
    assert caught.value.binding == "local" and "in its GGUF" in caught.value.message
    assert f'chat_templates = {{ "{TINY}" = "chatml-tools" }}' in caught.value.message
    assert not own._processes
    for request in (
        ask(TINY),
        ask(TINY, tools=[WEATHER], tool_choice="none"),
        dataclasses.replace(ask(TINY, tools=[WEATHER]), raw_prompt=True),
    ):
        assert await own._prepared(request) is request
    given = {"models_folders": [str(tiny_models)], "chat_templates": {TINY: "chatml-tools"}}
    fixed = LlamaCppBinding("local", settings.load(given))
    prepared = await fixed._prepared(ask(TINY, tools=[WEATHER], tool_choice="required"))
    assert prepared.messages[-1] == ChatMessage("assistant", START)
    inline = {"models_folders": [str(tiny_models)], "chat_template": "{{ messages }}"}
    with pytest.raises(NotSupported, match="set for it"):
        await LlamaCppBinding("local", settings.load(inline))._prepared(ask(TINY, tools=[ADD]))
