"""Worker threads for admin code (sync functions, sync personality scripts) that may never
return: each call gets a daemon thread, so stuck ones neither hold the threads of the loop's
default executor (image encoding, big bodies, DNS) nor keep the process from exiting."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import BackendUnavailable

T = TypeVar("T")
MAX_THREADS = 64  # admin-code threads alive at once, stuck ones included
_slots = threading.BoundedSemaphore(MAX_THREADS)


async def run_in_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`func(*args, **kwargs)` in a daemon thread, in this context (the caller travels with
    it); a caller that stops waiting (a time limit, a client gone) leaves it to end alone."""
    if not _slots.acquire(blocking=False):
        raise BackendUnavailable(
            f"{MAX_THREADS} sync function or script calls are still running (stuck ones "
            "included); no thread is left for another until one returns"
        )
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():  # the caller stopped waiting
            return
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)

    def work() -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = context.run(func, *args, **kwargs)
        except (Exception, SystemExit, asyncio.CancelledError) as exc:  # noqa: BLE001
            error = exc  # handed to the caller, who decides
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt: only the main thread
            # gets real ones; raised on the loop, this one would stop the server
            error = RuntimeError(f"{type(exc).__name__} raised in a worker thread: {exc}")
        finally:
            _slots.release()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, value, error)

    name = f"lollms-admin-{getattr(func, '__name__', 'call')}"
    threading.Thread(target=work, name=name, daemon=True).start()
    return await future


def cancelled_from_outside() -> bool:
    """Whether this task is being cancelled (the client left, a drain): a CancelledError that
    admin code raises of its own (a library's leaked cancel) is that code's failure instead."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
