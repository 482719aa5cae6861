"""What chat completions and responses read alike: the personality and the tool parameters."""

from __future__ import annotations

from typing import Any

from ...errors import InvalidRequest
from ...registry import Target
from ...service.personalities import split_personality


def personality_and_model(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """The personality (`<personality>@<model>` or `personality`) and the model ref."""
    named, ref = split_personality(body["model"])
    given = body["personality"]
    if named and given and named != given:
        raise InvalidRequest(
            f"the model names personality {named!r} but `personality` says {given!r}; give one",
            param="personality",
        )
    return given or named, ref


CHOICES = ("auto", "none", "required")


def tool_parameters(
    tools: list[dict[str, Any]] | None, choice: Any, parallel: bool | None, target: Target
) -> dict[str, Any]:
    """`tools`/`tool_choice` for a binding that calls tools; 501 for one that cannot. A choice
    that is not one of OpenAI's, or one that asks for a call while no tools are given, is a 400
    (as OpenAI answers), never a text answer to a caller who required a call."""
    if choice is not None and not isinstance(choice, dict) and choice not in CHOICES:
        raise InvalidRequest(
            'tool_choice must be "auto", "none", "required" or an object', param="tool_choice"
        )
    if not tools:
        if choice not in (None, "auto", "none"):
            why = "tool_choice asks for a tool call but no tools are given"
            raise InvalidRequest(why, param="tool_choice")
        return {}
    if choice == "none":
        return {}
    tools, choice = narrowed(tools, choice)
    if isinstance(choice, dict):
        name = _function_name(choice)
        if choice.get("type") != "function" or not isinstance(name, str):
            raise InvalidRequest(
                'an object tool_choice is {"type": "function", "function": {"name": ...}} '
                'or {"type": "allowed_tools", ...}',
                param="tool_choice",
            )
        if name not in {_function_name(tool) for tool in tools}:
            raise InvalidRequest(
                f"tool_choice names the function {name!r}, which is not among the tools",
                param="tool_choice",
            )
    target.require("tools", "call tools", "tools")
    found = {"tools": tools, "tool_choice": choice, "parallel_tool_calls": parallel}
    return {key: value for key, value in found.items() if value is not None}


def narrowed(tools: list[dict[str, Any]], choice: Any) -> tuple[list[dict[str, Any]], Any]:
    """OpenAI's `allowed_tools` choice as the tools it allows and its mode, which every binding
    understands; any other choice as it is."""
    if not (isinstance(choice, dict) and choice.get("type") == "allowed_tools"):
        return tools, choice
    inner = choice.get("allowed_tools")
    mode = inner.get("mode") if isinstance(inner, dict) else None
    allowed = inner.get("tools") if isinstance(inner, dict) else None
    if mode not in ("auto", "required") or not isinstance(allowed, list) or not allowed:
        raise InvalidRequest(
            'allowed_tools needs mode "auto" or "required" and a non-empty list of tools',
            param="tool_choice",
        )
    names = {_function_name(tool) for tool in allowed}
    kept = [tool for tool in tools if _function_name(tool) in names]
    missing = names - {_function_name(tool) for tool in kept}
    if missing:
        raise InvalidRequest(
            f"allowed_tools names tools that `tools` lacks: {', '.join(sorted(map(str, missing)))}",
            param="tool_choice",
        )
    return kept, mode


def _function_name(tool: Any) -> Any:
    """The name of a function tool (`{type: function, function: {name}}`); None otherwise."""
    function = tool.get("function") if isinstance(tool, dict) else None
    return function.get("name") if isinstance(function, dict) else None
