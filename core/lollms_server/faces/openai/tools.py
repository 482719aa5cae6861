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


def tool_parameters(
    tools: list[dict[str, Any]] | None, choice: Any, parallel: bool | None, target: Target
) -> dict[str, Any]:
    """`tools`/`tool_choice` for a binding that calls tools; 501 for one that cannot."""
    if not tools or choice == "none":
        return {}
    target.require("tools", "call tools", "tools")
    found = {"tools": tools, "tool_choice": choice, "parallel_tool_calls": parallel}
    return {key: value for key, value in found.items() if value is not None}
