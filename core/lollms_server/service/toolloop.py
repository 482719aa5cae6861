"""The server-side function-calling loop: the model asks, the server runs the call, feeds the
result back, and asks again, until an answer or the step limit."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..bindings import ChatMessage, Chunk, Output, ToolCall, Usage, closing_stream
from ..chunks import Accumulator
from ..tracing import span
from .functions import CallOutcome, Function, FunctionRegistry

if TYPE_CHECKING:
    from .generation import GenerationService
from .prepared import Prepared


@dataclass
class Step:
    """One round: what the model said and the calls it asked for, with their outcomes."""

    number: int
    text: str = ""
    thoughts: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The step as reported in the response."""
        return {"step": self.number, "text": self.text, "thoughts": self.thoughts or None,
                "function_calls": self.calls}  # fmt: skip


@dataclass
class ToolLoop:
    """Runs one request's loop; its `steps`, `answer` and `finish_reason` describe the result."""

    service: GenerationService
    registry: FunctionRegistry
    functions: Sequence[Function]
    max_steps: int
    steps: list[Step] = field(default_factory=list)
    finish_reason: str = "stop"
    usage: Usage | None = None
    media: list[Output] = field(default_factory=list)
    served: Prepared | None = None  # the attempt the latest step ran on

    @property
    def answer(self) -> Output:
        """The final text: what the model said in its last step."""
        last = self.steps[-1] if self.steps else Step(0)
        return Output("text", text=last.text, thoughts=last.thoughts or None)

    async def run(self, prepared: Prepared) -> AsyncIterator[Chunk]:
        """Text chunks of every step, a `function_call` chunk per call, an `info` per result."""
        prepared.target.require("tools", "call functions", "functions")
        messages = list(prepared.request.messages)
        params = dict(prepared.request.parameters)
        choice = params.pop("tool_choice", None) or "auto"
        tools = [function.tool_spec() for function in self.functions]
        for number in range(1, self.max_steps + 1):
            with span(
                "tool_loop.step", {"lollms.step": number, "lollms.model": prepared.target.model}
            ):
                step = Step(number)
                self.steps.append(step)
                request = dataclasses.replace(
                    prepared.request,
                    messages=tuple(messages),
                    parameters={
                        **params,
                        "tools": tools,
                        "tool_choice": choice if number == 1 else "auto",
                    },
                )
                folded = Accumulator()
                step_prepared = dataclasses.replace(prepared, request=request)
                stream = self.service.stream(step_prepared)
                async with closing_stream(stream) as chunks:
                    async for chunk in chunks:
                        self.served = stream.served
                        folded.add(chunk)
                        yield (
                            dataclasses.replace(chunk, tool_calls=()) if chunk.tool_calls else chunk
                        )
                step.text, step.thoughts, calls = folded.text, folded.thoughts, folded.calls
                self.media.extend(folded.media)
                self.finish_reason = folded.finish_reason or self.finish_reason
                if folded.usage is not None:
                    self.usage = folded.usage if self.usage is None else self.usage + folded.usage
                if not calls:
                    self.finish_reason = (
                        "stop" if self.finish_reason == "tool_calls" else self.finish_reason
                    )
                    return
                messages.append(ChatMessage("assistant", step.text, tool_calls=tuple(calls)))
                for call in calls:
                    yield Chunk(type="function_call", tool_calls=(call,), metadata={"step": number})
                    with span("function.call", {"lollms.function": call.name}):
                        outcome = await self._execute(call)
                    step.calls.append({**dataclasses.asdict(call), "result": outcome.result,
                                       "error": outcome.error})  # fmt: skip
                    verb = "failed" if outcome.error else "returned"
                    yield Chunk(type="info", content=f"function {call.name} {verb}", metadata={
                        "step": number, "call_id": call.id, "function": call.name,
                        "result": outcome.result, "error": outcome.error})  # fmt: skip
                    messages.append(ChatMessage("tool", outcome.for_model, tool_call_id=call.id))
        self.finish_reason = "max_steps"
        yield Chunk(type="info", content=f"stopped: the step limit ({self.max_steps}) was reached",
                    metadata={"max_steps": self.max_steps})  # fmt: skip

    async def _execute(self, call: ToolCall) -> CallOutcome:
        offered = {function.name: function for function in self.functions}
        function = offered.get(call.name)
        if function is None:
            names = ", ".join(sorted(offered))
            error = f"no function named {call.name!r} was offered; offered: {names}"
            return CallOutcome(call.name, {}, error=error)
        arguments = call.arguments
        if not isinstance(arguments, (str, dict)):
            arguments = json.dumps(arguments)
        return await self.registry.run(function, arguments)
