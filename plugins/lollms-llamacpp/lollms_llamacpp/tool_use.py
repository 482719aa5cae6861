"""Tool calling with llama.cpp: chat templates that list tools, and calls a request requires.

llama.cpp puts `tools` into the prompt only through the model's Jinja chat template, and learns
the tool-call format from that template (its differential auto-parser renders it with and
without tool calls). A template without tools (SmolLM2's, most small ChatML models') therefore
drops them; the `chatml-tools` template shipped here gives such models Hermes-style
`<tool_call>{"name": ..., "arguments": ...}</tool_call>` calls that llama.cpp parses into
OpenAI `tool_calls`, whole and streamed.

For `tool_choice: "required"` llama.cpp's grammar still lets the model write text before the
first call (`p.optional(p.content(p.until(tool_start)))` in common/chat-auto-parser-generator.cpp),
so a small model can ramble until `max_tokens`. When the template's call marker is known
(`tool_call_start`), the binding starts the assistant's reply with it; llama.cpp continues that
reply (prefill) and its grammar then allows nothing but the call. llama.cpp reads `tool_choice`
as a string only (a named function falls back to "auto"), so a named choice is sent as
"required" with only that tool and one call.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lollms_server.sdk import ChatMessage, GenerationRequest, InvalidRequest

TEMPLATES_DIR = Path(__file__).parent / "templates"

#: llama.cpp sampling parameters passed on besides OpenAI's standard ones.
LLAMA_PARAMETERS = (
    "top_k",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "repeat_last_n",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "dry_multiplier",
    "xtc_probability",
    "xtc_threshold",
    "grammar",
    "json_schema",
    "n_keep",
    "cache_prompt",
    "chat_template_kwargs",
)
#: Templates shipped with the plugin, by setting value.
BUILTIN_TEMPLATES = {"chatml-tools": "chatml_tools.jinja"}
#: What a tool call starts with under each shipped template.
BUILTIN_CALL_STARTS = {"chatml-tools": "<tool_call>\n"}
#: A template that reads the `tools` variable renders them into the prompt.
USES_TOOLS = re.compile(r"\btools\b")


def is_inline(value: str) -> bool:
    """True when a `chat_template` value is Jinja text rather than a name or a path."""
    return "{{" in value or "{%" in value


def template_file(value: str) -> Path | None:
    """The file a `chat_template` value names (a shipped name or a path); None for inline text."""
    if value in BUILTIN_TEMPLATES:
        return TEMPLATES_DIR / BUILTIN_TEMPLATES[value]
    if is_inline(value):
        return None
    return Path(value).expanduser()


def template_problem(value: str) -> str | None:
    """Why a `chat_template` value is unusable, or None."""
    path = template_file(value)
    if path is None or path.is_file():
        return None
    shipped = ", ".join(sorted(BUILTIN_TEMPLATES))
    return (
        f"chat template {value!r} is neither a shipped template ({shipped}), "
        "nor an existing .jinja file, nor Jinja text"
    )


def template_text(value: str) -> str:
    """The Jinja text of a `chat_template` value ("" when its file cannot be read)."""
    path = template_file(value)
    if path is None:
        return value
    try:
        return _read_template(str(path), path.stat().st_mtime_ns)
    except OSError:
        return ""


@functools.lru_cache(maxsize=64)
def _read_template(path: str, mtime_ns: int) -> str:
    return Path(path).read_text(encoding="utf-8", errors="replace")


def lists_tools(value: str) -> bool:
    """True when a chat template (a setting value or Jinja text) puts `tools` in the prompt."""
    return bool(USES_TOOLS.search(template_text(value)))


def worker_args(value: str | None) -> list[str]:
    """The worker's command-line arguments for a `chat_template` value."""
    if not value:
        return []
    path = template_file(value)
    if path is None:
        return ["--chat-template", value]
    return ["--chat-template-file", str(path)]


def asks_for_tools(request: GenerationRequest) -> bool:
    """True when a chat request offers tools the model may call (tool_choice is not "none")."""
    parameters = request.parameters
    return (
        not request.raw_prompt
        and bool(parameters.get("tools"))
        and parameters.get("tool_choice") != "none"
    )


def call_start(template: str | None, configured: str | None) -> str:
    """The text a tool call starts with: `tool_call_start`, else the shipped template's marker."""
    if configured is not None:
        return configured
    return BUILTIN_CALL_STARTS.get(template or "", "")


def prepare(request: GenerationRequest, start: str, instance: str) -> GenerationRequest:
    """The request as llama.cpp must get it when `tool_choice` requires a call (prefilled, and
    without `response_format`)."""
    parameters = request.parameters
    tools = parameters.get("tools")
    choice = parameters.get("tool_choice")
    if request.raw_prompt or not tools or choice in (None, "auto", "none"):
        return request
    changed = dict(parameters)
    if isinstance(choice, Mapping):
        name = _chosen_name(choice, instance)
        chosen = [tool for tool in tools if _tool_name(tool) == name]
        if not chosen:
            raise InvalidRequest(
                f"tool_choice names the function {name!r}, which is not among the tools",
                param="tool_choice",
                binding=instance,
            )
        changed.update(tools=chosen, tool_choice="required", parallel_tool_calls=False)
    elif choice != "required":
        return request  # llama.cpp answers other values with its own 400
    # the answer is a call, no text to format; llama.cpp cannot hold both grammars (a 400)
    changed.pop("response_format", None)
    messages = request.messages
    if start and not (messages and messages[-1].role == "assistant"):
        messages = (*messages, ChatMessage("assistant", start))
        if changed.get("parallel_tool_calls") is False and start.strip():
            # llama.cpp's grammar always allows more calls; a small model repeats its call
            # until max_tokens. The prefilled call is not generated, so a second one starts
            # the first time the marker appears in the output.
            changed["stop"] = [*_stops(changed.get("stop")), start.strip()]
    return dataclasses.replace(request, messages=messages, parameters=changed)


def _stops(stop: Any) -> list[str]:
    """A `stop` parameter as a list."""
    if isinstance(stop, str):
        return [stop]
    return [item for item in stop or () if isinstance(item, str)]


def _chosen_name(choice: Mapping[str, Any], instance: str) -> str:
    """The function name of an OpenAI named `tool_choice`."""
    function = choice.get("function")
    name = function.get("name") if isinstance(function, Mapping) else None
    if choice.get("type", "function") != "function" or not isinstance(name, str) or not name:
        raise InvalidRequest(
            'tool_choice must be "auto", "none", "required" or '
            '{"type": "function", "function": {"name": ...}}',
            param="tool_choice",
            binding=instance,
        )
    return name


def _tool_name(tool: Any) -> str | None:
    """The function name of one OpenAI tool definition."""
    if not isinstance(tool, Mapping):
        return None
    function = tool.get("function")
    name = function.get("name") if isinstance(function, Mapping) else None
    return name if isinstance(name, str) else None
