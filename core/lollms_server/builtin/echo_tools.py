"""Echo's scripted tool calls: `CALL <name> <json arguments>` lines in the prompt ask for calls.

With tools offered, echo asks for every `CALL` line of the last user message; once tool
results follow, it answers by quoting them (so a test sees the result reach the model). A
prompt containing `LOOP` asks again after every result, to exercise step limits.
"""

from __future__ import annotations

import re

from ..bindings import GenerationRequest, ToolCall

CALL_LINE = re.compile(r"^CALL\s+(\S+)[ \t]*(.*)$", re.MULTILINE)


def _tool_results(request: GenerationRequest) -> list[str]:
    """Contents of the tool messages after the last user message."""
    results: list[str] = []
    for message in reversed(request.messages):
        if message.role == "user":
            break
        if message.role == "tool":
            results.insert(0, message.content)
    return results


def scripted_calls(request: GenerationRequest) -> tuple[ToolCall, ...]:
    """The tool calls the prompt scripts, when tools are offered and a call is due."""
    params = request.parameters
    if not params.get("tools") or params.get("tool_choice") == "none":
        return ()
    prompt = request.prompt
    rounds = sum(1 for message in request.messages if message.role == "tool")
    if _tool_results(request) and "LOOP" not in prompt:
        return ()
    return tuple(
        ToolCall(f"call_{rounds}_{index}", name, arguments.strip() or "{}")
        for index, (name, arguments) in enumerate(CALL_LINE.findall(prompt))
    )


def tool_answer(request: GenerationRequest) -> str | None:
    """After tool results, an answer quoting them; None when there are none."""
    results = _tool_results(request)
    return "Function results: " + "; ".join(results) if results else None
