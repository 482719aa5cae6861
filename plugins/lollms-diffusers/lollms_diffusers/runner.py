"""The worker thread that runs pipelines off the event loop, one job at a time.

A job is a plain function called in the worker thread with a `Job` handle. The pipeline's step
callback calls `job.step(i, n)`, which raises `Cancelled` once the job was cancelled (so the
pipeline stops between two steps) and otherwise hands a progress event to the event loop with
`loop.call_soon_threadsafe` into the job's asyncio.Queue. One thread per binding instance: a
pipeline object is not safe to call from two threads at once, and one device runs one job well.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from lollms_server.sdk import BackendError, LollmsError, track_thread_work

log = logging.getLogger(__name__)
T = TypeVar("T")


class Cancelled(Exception):
    """Raised inside the worker thread to stop a cancelled pipeline between steps."""


@dataclass(frozen=True)
class Event:
    """Progress of a job, as the event loop receives it."""

    content: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


class Job(Generic[T]):
    """One unit of work for the worker thread: its progress queue, cancel flag and result."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self.loop = loop
        self.name = name
        self.events: asyncio.Queue[Event | None] = asyncio.Queue()
        self.cancel_flag = threading.Event()
        self.steps_done = 0
        self.steps_total = 0
        self.started = threading.Event()
        self.future: asyncio.Future[T] = loop.create_future()

    @property
    def cancelled(self) -> bool:
        """True once `cancel()` was called."""
        return self.cancel_flag.is_set()

    def cancel(self) -> None:
        """Ask the job to stop at its next step (or not to start at all)."""
        self.cancel_flag.set()

    def check(self) -> None:
        """Raise Cancelled if the job was cancelled (call it from the worker thread)."""
        if self.cancel_flag.is_set():
            raise Cancelled(self.name)

    def step(self, index: int, total: int) -> None:
        """Record that step `index` (1-based) of `total` finished; stop if cancelled."""
        self.steps_done = index
        self.steps_total = total
        self.emit(f"step {index}/{total}", step=index, steps=total)
        self.check()

    def emit(self, content: str, **metadata: Any) -> None:
        """Send a progress event to the event loop (dropped once the loop is gone)."""
        self._post(Event(content, metadata))

    def _post(self, event: Event | None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody listens any more
            self.cancel_flag.set()


class Runner:
    """A single worker thread with a queue of jobs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor: _DaemonWorker | None = None
        self._jobs: set[Job[Any]] = set()

    def _pool(self) -> _DaemonWorker:
        """The worker thread (a generation's slot is held until its job there ends)."""
        if self._executor is None:
            self._executor = _DaemonWorker(f"diffusers-{self.name}_0")
        return self._executor

    def submit(self, name: str, work: Callable[[Job[T]], T]) -> Job[T]:
        """Queue `work(job)` for the worker thread; the job's queue ends with a None."""
        loop = asyncio.get_running_loop()
        job: Job[T] = Job(loop, name)
        self._jobs.add(job)
        job.future.add_done_callback(lambda done: self._forget(job, done))
        inner = self._pool().submit(self._run, job, work)
        inner.add_done_callback(lambda done: _settle(loop, job, done))
        return job

    async def call(self, name: str, work: Callable[[Job[T]], T]) -> T:
        """Run `work` in the worker thread (after queued jobs) and return its result."""
        return await self.submit(name, work).future

    @staticmethod
    def _run(job: Job[T], work: Callable[[Job[T]], T]) -> T:
        """Call `work`; errors leave without tracebacks so no frame keeps a pipeline alive."""
        job.started.set()
        error: Exception
        try:
            job.check()
            return work(job)
        except Cancelled:
            error = Cancelled(job.name)
        except LollmsError as exc:
            error = exc.with_traceback(None)
            error.__cause__ = error.__context__ = None
        except Exception as exc:  # third-party pipeline code: report it, keep no frames
            log.exception("diffusers job %s failed", job.name)
            error = BackendError(f"{job.name} failed: {type(exc).__name__}: {exc}")
        finally:
            job._post(None)
        raise error

    def _forget(self, job: Job[Any], done: asyncio.Future[Any]) -> None:
        self._jobs.discard(job)
        if not done.cancelled():
            done.exception()  # retrieved: an abandoned job's error is not logged as unseen

    def cancel_all(self) -> None:
        """Cancel every queued or running job."""
        for job in list(self._jobs):
            job.cancel()

    async def stop(self, timeout_s: float) -> None:
        """Cancel the jobs and wait (up to `timeout_s`) for the thread to end."""
        self.cancel_all()
        executor, self._executor = self._executor, None
        if executor is None:
            return
        executor.shutdown(cancel_futures=True)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while executor.alive():  # no thread of ours waits on it: the process can still exit
            if asyncio.get_running_loop().time() >= deadline:
                log.warning("diffusers worker %s still busy after %ss", self.name, timeout_s)
                return
            await asyncio.sleep(0.05)


class _DaemonWorker:
    """One daemon thread running submitted calls in order. Not a ThreadPoolExecutor: Python
    joins those threads at exit, so a pipeline stuck inside one step (steps cannot be
    interrupted) kept the process alive after shutdown gave up waiting for it."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Queue `fn(*args)`; its future holds the outcome."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        track_thread_work(future)  # the running binding call's slot waits for it
        self._calls.put(_Call(future, fn, args))
        return future

    def shutdown(self, cancel_futures: bool = False) -> None:
        """Stop after the running call (without waiting for it); queued calls are cancelled
        with `cancel_futures`."""
        while cancel_futures:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                break
            if call is not None:
                call.future.cancel()
        self._calls.put(None)

    def alive(self) -> bool:
        """True while the thread runs (a call, or waiting for one before shutdown)."""
        return self._thread.is_alive()

    def _loop(self) -> None:
        while (call := self._calls.get()) is not None:
            if not call.future.set_running_or_notify_cancel():
                continue
            try:
                call.future.set_result(call.fn(*call.args))
            except BaseException as exc:  # noqa: BLE001 (the future carries it to the loop)
                call.future.set_exception(exc)


@dataclass
class _Call:
    """One queued call of the worker."""

    future: concurrent.futures.Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]


def _settle(
    loop: asyncio.AbstractEventLoop, job: Job[T], done: concurrent.futures.Future[T]
) -> None:
    """Copy the thread's outcome into the job's asyncio future (on the loop's thread)."""

    def settle() -> None:
        if job.future.done():
            return
        if done.cancelled():
            job.future.set_exception(Cancelled(job.name))
            job._post(None)
            return
        error = done.exception()
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(done.result())

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed
        log.debug("job %s finished after its event loop closed", job.name)
