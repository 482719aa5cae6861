"""Scripted personalities: run `run_workflow(prompt, params, context)`, stream what it sends."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..bindings import ChatMessage, Chunk, InputItem, Output, Result, Usage
from ..chunks import Accumulator
from ..errors import BackendTimeout, LollmsError, WorkflowFailed
from ..registry import Registry, Target
from .admin_threads import cancelled_from_outside, run_in_thread
from .generation_outcome import Outcome
from .prepared import Prepared

if TYPE_CHECKING:
    from .functions import CallOutcome, FunctionRegistry

T = TypeVar("T")


class ScriptHost(Protocol):
    """What a script's generations go through: the generation service, seen from here."""

    @property
    def registry(self) -> Registry:
        """Where targets are resolved."""

    @property
    def timeout_s(self) -> float:
        """The longest a generation (a script's whole run included) may take."""

    async def prepare(
        self,
        *,
        face: str,
        generation_type: str,
        target: Target,
        messages: Sequence[ChatMessage] = (),
        inputs: Sequence[InputItem] = (),
        parameters: Mapping[str, Any] | None = None,
        personality: str | None = None,
        in_script: bool = False,
    ) -> Prepared:
        """A request resolved and ready to run."""

    async def generate(self, prepared: Prepared) -> Result:
        """Run it to its whole result."""

    def accounted(self, prepared: Prepared) -> AbstractAsyncContextManager[Outcome]:
        """The caller's concurrency slot and budget, held while the script runs."""


class WorkflowContext:
    """What a script may use: the request, generation with any allowed binding, functions, and
    a way to stream chunks, `info` events and media back. Async methods are awaited by async
    scripts; a sync script (run in a worker thread) wraps them in `context.run(...)`."""

    def __init__(
        self,
        service: ScriptHost,
        prepared: Prepared,
        functions: FunctionRegistry,
        sink: Callable[[Chunk], object],
    ) -> None:
        self._service = service
        self._prepared = prepared
        self._sink = sink  # takes what the script sends, on the server loop
        self._loop = asyncio.get_running_loop()
        self.personality = prepared.personality
        self.messages: tuple[ChatMessage, ...] = prepared.request.messages
        self.inputs: tuple[InputItem, ...] = prepared.request.inputs
        self.parameters: dict[str, Any] = dict(prepared.request.parameters)
        self.generation_type = prepared.request.generation_type
        self.request_id = prepared.request.request_id
        self.functions = functions
        self.cancelled = False
        self.usage: Usage | None = None  # the sum of the generations' usage: the run's own

    async def generate(
        self,
        prompt: str | None = None,
        *,
        generation_type: str = "ttt",
        binding: str | None = None,
        model: str | None = None,
        messages: Sequence[ChatMessage] | None = None,
        inputs: Sequence[InputItem] = (),
        parameters: dict[str, Any] | None = None,
        personality: str | None = None,
    ) -> Result:
        """Run one generation (the request's own target for its type unless told otherwise)."""
        service, own = self._service, self._prepared
        if binding is None and model is None and generation_type == self.generation_type:
            target = dataclasses.replace(own.target)
        else:
            target = await service.registry.resolve(generation_type, binding, model)
        turns = list(messages) if messages is not None else []
        if prompt is not None:
            turns.append(ChatMessage("user", prompt))
        inner = await service.prepare(
            face=own.face,
            generation_type=generation_type,
            target=target,
            messages=turns,
            inputs=inputs,
            parameters=parameters,
            personality=personality,
            in_script=True,
        )
        result = await service.generate(inner)
        if result.usage is not None:  # each generation charged the key already
            self.usage = result.usage if self.usage is None else self.usage + result.usage
        return result

    async def generate_text(self, prompt: str, **options: Any) -> str:
        """The text answer of a `ttt` generation."""
        result = await self.generate(prompt, **options)
        return "".join(output.text for output in result.outputs if output.type == "text")

    async def call_function(self, name: str, arguments: dict[str, Any]) -> CallOutcome:
        """Run a registered (and enabled) function with validated arguments."""
        (function,) = self.functions.usable([name])
        return await self.functions.run(function, arguments)

    def send_chunk(self, text: str) -> None:
        """Stream a piece of the answer."""
        self._put(Chunk(content=_checked("send_chunk", text, str, "text")))

    def send_info(self, message: str, **metadata: Any) -> None:
        """Stream an `info` event (progress, a step's name...); metadata must be JSON."""
        json.dumps(metadata)  # TypeError in the script, not a broken stream after it
        self._put(Chunk(type="info", content=_checked("send_info", message, str, "text"),
                        metadata=metadata))  # fmt: skip

    def send_output(self, output: Output) -> None:
        """Add a produced item (an image, a sound...) to the answer."""
        self._put(Chunk(output=_checked("send_output", output, Output, "an Output")))

    def run(self, awaitable: Awaitable[T]) -> T:
        """From a sync script: run one of the async methods on the server loop and wait."""
        if self.cancelled:
            raise asyncio.CancelledError("the request was cancelled")
        if self._on_loop():  # waiting here would block the very loop that must run it
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            raise RuntimeError(
                "context.run is for sync scripts; an async script awaits the call instead "
                "(await context.generate_text(...))"
            )

        async def wrapped() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapped(), self._loop).result()

    def _on_loop(self) -> bool:
        """Whether this runs on the server loop (an async script), not in a worker thread."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _put(self, chunk: Chunk) -> None:
        if self.cancelled:
            raise asyncio.CancelledError("the request was cancelled")
        if self._on_loop():
            self._sink(chunk)
        else:
            self._loop.call_soon_threadsafe(self._sink, chunk)


async def run_workflow(
    service: ScriptHost, prepared: Prepared, functions: FunctionRegistry
) -> Result:
    """A script's whole answer: the Result it returns as it is when it sent no answer on the
    way (never split into chunks and folded back), else what it sent then what it returned,
    folded. The run is accounted (slot, budget, audit) like any generation."""
    sent: list[Chunk] = []
    context = WorkflowContext(service, prepared, functions, sent.append)
    async with service.accounted(prepared):
        try:
            async with _time_limit(prepared, service.timeout_s, time.monotonic()):
                value = await _run_script(prepared, context)
        finally:
            context.cancelled = True
    if isinstance(value, Result) and not any(chunk.type == "chunk" for chunk in sent):
        return dataclasses.replace(value, usage=context.usage or value.usage)
    folded = Accumulator()
    for chunk in (*sent, *_chunks_of(value), *_usage_of(context)):
        folded.add(chunk)
    return folded.result()


async def stream_workflow(
    service: ScriptHost, prepared: Prepared, functions: FunctionRegistry
) -> AsyncGenerator[Chunk, None]:
    """The chunks a personality's script sends, then those of what it returns; the run is
    accounted (slot, budget, audit) like any generation."""
    queue: asyncio.Queue[Chunk | None] = asyncio.Queue()
    context = WorkflowContext(service, prepared, functions, queue.put_nowait)

    async def run() -> None:
        try:
            for chunk in (*_chunks_of(await _run_script(prepared, context)), *_usage_of(context)):
                queue.put_nowait(chunk)
        finally:
            queue.put_nowait(None)

    async with service.accounted(prepared):
        task = asyncio.create_task(run())
        started = time.monotonic()
        try:
            while True:
                async with _time_limit(prepared, service.timeout_s, started):  # not over yields
                    chunk = await queue.get()
                if chunk is None:
                    break
                yield chunk
            await task
        finally:
            context.cancelled = True
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


@contextlib.asynccontextmanager
async def _time_limit(prepared: Prepared, timeout_s: float, started: float) -> AsyncIterator[None]:
    """The script's run past `timeout_s` since `started` is a BackendTimeout naming it."""
    personality = prepared.personality
    assert personality is not None
    try:
        async with asyncio.timeout(started + timeout_s - time.monotonic()):
            yield
    except TimeoutError as exc:
        raise BackendTimeout(
            f"personality {personality.name!r}: script {personality.script} did not finish "
            f"within {timeout_s:g}s ([server] request_timeout_s)",
            binding=f"personality:{personality.name}",
        ) from exc


async def _run_script(prepared: Prepared, context: WorkflowContext) -> Any:
    """What the personality's script returns (a sync script runs in a worker thread); any
    failure of the script's own code, or a value of a kind it may not return, is a
    WorkflowFailed naming it."""
    personality = prepared.personality
    assert personality is not None and personality.workflow is not None
    workflow = personality.workflow
    prompt, params = prepared.request.prompt, dict(prepared.request.parameters)
    try:
        if inspect.iscoroutinefunction(workflow):
            value = await workflow(prompt, params, context)
        else:
            value = await run_in_thread(workflow, prompt, params, context)
        if not _returnable(value):
            raise TypeError(
                f"run_workflow returned {type(value).__name__}; expected text or Output"
            )
        return value
    except LollmsError:
        raise
    except (Exception, SystemExit, asyncio.CancelledError) as exc:  # sys.exit() must not stop us
        if isinstance(exc, asyncio.CancelledError) and cancelled_from_outside():
            raise
        raise WorkflowFailed(
            f"personality {personality.name!r}: script {personality.script} raised "
            f"{type(exc).__name__}: {exc}",
            binding=f"personality:{personality.name}",
        ) from exc


def _chunks_of(value: Any) -> list[Chunk]:
    """What a script returned, as chunks: text, an Output, a Result, or a list of those."""
    if value is None:
        return []
    if isinstance(value, str):
        return [Chunk(content=value)]
    if isinstance(value, Output):
        return [Chunk(output=value)]
    if isinstance(value, Result):
        return [
            Chunk(output=o) if o.type != "text" else Chunk(content=o.text) for o in value.outputs
        ]
    return [chunk for item in value for chunk in _chunks_of(item)]


def _checked(method: str, value: T, kind: type[T], named: str) -> T:
    """`value` when it is a `kind`; else the TypeError the script's call raises."""
    if not isinstance(value, kind):
        raise TypeError(f"{method} takes {named}, not {type(value).__name__}")
    return value


def _usage_of(context: WorkflowContext) -> list[Chunk]:
    """The run's usage (its generations' sum) as a last chunk, when it made any."""
    return [] if context.usage is None else [Chunk(usage=context.usage)]


def _returnable(value: Any) -> bool:
    """Whether a script may return `value`: text, an Output, a Result, a list of those, None."""
    if isinstance(value, (list, tuple)):
        return all(_returnable(item) for item in value)
    return value is None or isinstance(value, (str, Output, Result))
