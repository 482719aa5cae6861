"""Reading a binding's chunk stream: its time limits kept by one timer per stream, its failures
mapped to our errors, the wait counted as time spent on the backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import TracebackType

from ..bindings import Binding, Chunk, GenerationRequest
from ..chunks import chunk_problem
from ..errors import BackendTimeout
from ..guard import BINDING_FAILURES, BindingErrors, binding_failure, stray_cancel
from ..offloop import ThreadWork
from ..trace import current_trace


class BindingReader:
    """The chunks of one `binding.stream(request)` call, read one at a time with `read()`.

    The request's time limit (and, until `first_token()`, the first-token limit) is kept by
    one loop timer for the whole stream, not a timeout per chunk: the timer cancels the reading
    task only while it waits on the binding, and a limit passed between reads (the consumer
    was busy) is raised by the next read. Leaving the `async with` block closes the stream.
    """

    def __init__(
        self,
        binding: Binding,
        request: GenerationRequest,
        timeout_s: float,
        first_token_timeout_s: float = 0.0,
        *,
        work: ThreadWork | None = None,
    ) -> None:
        self.binding = binding
        self.work = work or ThreadWork()  # the threads the binding starts while it is read
        self.timeout_s = timeout_s
        self.first_token_timeout_s = first_token_timeout_s
        self._model = request.model
        self._started = time.monotonic()
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._deadline = now + timeout_s
        self._limit = min(self._deadline, now + (first_token_timeout_s or timeout_s))
        self._timer: asyncio.TimerHandle | None = None
        self._waiting: asyncio.Task[object] | None = None  # the task waiting on the binding
        self._cancelled = False  # the timer cancelled that task's wait
        self._trace = current_trace()  # the request's: its backend time grows with each read
        with BindingErrors(binding, timeout_s):
            self._chunks: AsyncIterator[Chunk] = binding.stream(request)

    async def __aenter__(self) -> BindingReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def first_token(self) -> float:
        """The first token came: from now on only the request's time limit applies. Returns
        the seconds it took since the stream was opened."""
        if self._limit != self._deadline:
            self._limit = self._deadline
            self._disarm()
        return time.monotonic() - self._started

    async def read(self) -> Chunk | None:
        """The binding's next chunk, or None when its stream ended."""
        started = time.perf_counter()
        try:  # one frame per chunk: the wait is written out here, not in a coroutine of its own
            if self._loop.time() >= self._limit:
                raise TimeoutError
            if self._timer is None:
                self._timer = self._loop.call_at(self._limit, self._expire)
            task = asyncio.current_task()
            assert task is not None
            cancelling = task.cancelling()
            self._waiting = task
            try:
                with self.work:
                    chunk = await anext(self._chunks)
            except StopAsyncIteration:
                return None
            except asyncio.CancelledError as exc:
                if self._cancelled and task.uncancel() <= cancelling:  # ours alone: a time limit
                    raise TimeoutError from None
                if not self._cancelled and task.cancelling() <= cancelling:  # nobody cancelled
                    raise stray_cancel(self.binding, exc) from exc
                raise
            finally:
                self._waiting = None
            if self._cancelled:  # the binding swallowed the timer's cancel: the next read raises
                self._cancelled = False
                task.uncancel()
            if (problem := chunk_problem(chunk)) is not None:
                raise TypeError(problem)
            return chunk
        except BINDING_FAILURES as exc:
            first = self._first_token_timeout() if isinstance(exc, TimeoutError) else None
            error = first or binding_failure(self.binding, exc, self.timeout_s)
            if error is exc:
                raise
            raise error from exc
        finally:
            if self._trace is not None:  # the server's overhead is measured without the wait
                self._trace.waited_on(self.binding.instance_name, started)

    async def aclose(self) -> None:
        """Stop the timer and close the binding's stream."""
        self._disarm()
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            with self.work:
                await aclose()

    def _expire(self) -> None:
        self._timer = None
        if self._waiting is not None:
            self._cancelled = True
            self._waiting.cancel()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _first_token_timeout(self) -> BackendTimeout | None:
        """The first-token limit's own error when that limit (and not the request's) passed."""
        if self._limit < self._deadline:
            return BackendTimeout(
                f"no first token from {self.binding.instance_name}/{self._model} within "
                f"{self.first_token_timeout_s:g}s",
                binding=self.binding.instance_name,
            )
        return None
