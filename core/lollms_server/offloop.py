"""The threads a binding call starts, which a cancelled call leaves running.

A thread cannot be stopped: when a generation is cancelled (the client left, a time limit
passed) during work its binding runs off the event loop (a pipeline's last, uninterruptible
step), that work goes on. The generation's slot (its lane's place, which is also the model's
busy mark) is therefore held until the call's threads end, so queue depth, status and unload
or eviction decisions stay true.

A thread is the call's when it is submitted, while the call runs, to a `TrackedThreads` pool:
the event loop's default executor (`asyncio.to_thread`, `loop.run_in_executor(None, ...)`) is
one from start-up on, and plugins make their own pools from the SDK's `TrackedThreads`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)
#: the threads of the binding call each task runs now
_calls: dict[asyncio.Task[Any], list[concurrent.futures.Future[Any]]] = {}


class TrackedThreads(concurrent.futures.ThreadPoolExecutor):
    """A thread pool whose work, submitted during a binding call, that call's slot waits for."""

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        """Run `fn` in a thread, counted as the running binding call's work."""
        future = super().submit(fn, *args, **kwargs)
        track_thread_work(future)
        return future


def track_thread_work(future: concurrent.futures.Future[Any]) -> None:
    """Count `future` (a thread's work) as the work of the binding call the current task runs."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # submitted from a thread: no call of ours
        return
    work = _calls.get(task) if task is not None else None
    if work is not None:
        if len(work) >= 64:  # a long stream's many short calls: keep those still running
            work[:] = [running for running in work if not running.done()]
        work.append(future)


def track_default_executor() -> None:
    """Make the running loop's default executor a `TrackedThreads` pool (once)."""
    loop = asyncio.get_running_loop()
    if not isinstance(getattr(loop, "_default_executor", None), TrackedThreads):
        loop.set_default_executor(TrackedThreads(thread_name_prefix="asyncio"))


class ThreadWork:
    """The threads of one binding call: those submitted inside its `with` blocks (entered once
    per await on the binding, so a stream's consumer work between chunks is not counted)."""

    __slots__ = ("_previous", "_task", "futures")

    def __init__(self) -> None:
        self.futures: list[concurrent.futures.Future[Any]] = []
        self._task: asyncio.Task[Any] | None = None
        self._previous: list[concurrent.futures.Future[Any]] | None = None

    def __enter__(self) -> ThreadWork:
        task = self._task = asyncio.current_task()
        if task is not None:
            self._previous = _calls.get(task)
            _calls[task] = self.futures
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        task, previous = self._task, self._previous
        if task is None:
            return
        if previous is None:
            _calls.pop(task, None)
        else:
            _calls[task] = previous
        self._task = self._previous = None

    def running(self) -> bool:
        """True while one of the call's threads still works."""
        return any(not future.done() for future in self.futures)

    def then(self, callback: Callable[[], None]) -> None:
        """Call `callback` on the event loop once the call's threads have ended (now when none
        runs)."""
        pending = [future for future in self.futures if not future.done()]
        if not pending:
            callback()
            return
        loop = asyncio.get_running_loop()
        left, lock = [len(pending)], threading.Lock()

        def ended(_future: concurrent.futures.Future[Any]) -> None:
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                try:
                    loop.call_soon_threadsafe(callback)
                except RuntimeError:  # the loop is closed: nothing is left to release
                    log.debug("a binding call's threads ended after the event loop closed")

        for future in pending:
            future.add_done_callback(ended)
