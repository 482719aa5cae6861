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

    final: Output | None = None  # a whole run's last answer, as the binding gave it

    @property
    def answer(self) -> Output:
        """The final text: what the model said in its last step."""
        if self.final is not None:
            return self.final
        last = self.steps[-1] if self.steps else Step(0)
        return Output("text", text=last.text, thoughts=last.thoughts or None)

    async def complete(self, prepared: Prepared) -> None:
        """Run the loop for a whole answer: each step's result comes whole (never as chunks)."""
        async with closing_stream(self.run(prepared, stream=False)) as events:
            async for _event in events:
                pass

    async def run(self, prepared: Prepared, *, stream: bool = True) -> AsyncIterator[Chunk]:
        """Text chunks of every step (when `stream`), a `function_call` chunk per call, an
        `info` per result; the loop holds one concurrency slot of the caller throughout."""
        prepared.target.require("tools", "call functions", "functions")
        async with self.service.holding_slot():
            in_slot = dataclasses.replace(prepared, in_slot=True)
            async with closing_stream(self._steps(in_slot, stream)) as chunks:
                async for chunk in chunks:
                    yield chunk

    async def _steps(self, prepared: Prepared, stream: bool) -> AsyncIterator[Chunk]:
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
                step_prepared = dataclasses.replace(prepared, request=request)
                if stream:
                    folded = Accumulator()
                    chunk_stream = self.service.stream(step_prepared)
                    async with closing_stream(chunk_stream) as chunks:
                        async for chunk in chunks:
                            self.served = chunk_stream.served
                            folded.add(chunk)
                            yield (
                                dataclasses.replace(chunk, tool_calls=())
                                if chunk.tool_calls
                                else chunk
                            )
                    result = folded.result(default_finish=self.finish_reason)
                    step.text, step.thoughts = folded.text, folded.thoughts
                    self.media.extend(folded.media)
                else:
                    self.served, result = await self.service.run(step_prepared)
                    self.final = result.text
                    step.text, step.thoughts = self.final.text, self.final.thoughts or ""
                    self.media.extend(o for o in result.outputs if o is not self.final)
                calls = list(result.tool_calls)
                self.finish_reason = result.finish_reason
                if result.usage is not None:
                    self.usage = result.usage if self.usage is None else self.usage + result.usage
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
