"""Calling binding code safely: a time limit, and every failure re-raised as one of our errors."""

from __future__ import annotations

import asyncio
import logging
import operator
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .bindings import Binding, ModelInfo, Result
from .chunks import result_problem
from .errors import BackendError, BackendTimeout, LollmsError
from .trace import current_trace

log = logging.getLogger(__name__)
T = TypeVar("T")
#: what third-party binding code may throw that must not stop the server: a library's sys.exit()
#: and a KeyboardInterrupt it raises (a real Ctrl-C never surfaces in binding code: aiohttp turns
#: SIGINT into GracefulExit in the loop)
BINDING_FAILURES = (Exception, SystemExit, KeyboardInterrupt)
LIST_FAILURE_MEMO_S = 5.0  # how long a failed model list is answered from memory
LIST_FAILURE_STALE_S = 60.0  # ... and up to when, while it is asked again in the background
_list_failures: weakref.WeakKeyDictionary[Binding, tuple[float, LollmsError]] = (
    weakref.WeakKeyDictionary()
)
#: the calls under way, per binding, then per fleet hop count (see `shared_call`)
SharedCalls = weakref.WeakKeyDictionary[Binding, dict[int, asyncio.Future[T]]]
_list_calls: SharedCalls[list[ModelInfo]] = weakref.WeakKeyDictionary()


class BindingErrors:
    """Inside the `with` block, anything a binding throws is re-raised as one of our errors
    naming the instance (a class: a `@contextmanager` generator per call costs more)."""

    __slots__ = ("binding", "timeout_s")

    def __init__(self, binding: Binding, timeout_s: float | None = None) -> None:
        self.binding, self.timeout_s = binding, timeout_s

    def __enter__(self) -> None:
        return None

    def __exit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        if isinstance(exc, BINDING_FAILURES):
            error = binding_failure(self.binding, exc, self.timeout_s)
            if error is not exc:
                raise error from exc


def binding_failure(binding: Binding, exc: BaseException, timeout_s: float | None) -> LollmsError:
    """What a binding's exception becomes: our own error naming the instance (a 504 for a
    timeout; any other failure of third-party code a 502, logged)."""
    name = binding.instance_name
    if isinstance(exc, LollmsError):
        exc.binding = exc.binding or name
        return exc
    if isinstance(exc, TimeoutError):
        return BackendTimeout(f"binding {name!r} did not answer within {timeout_s}s", binding=name)
    log.error("binding %s failed", name, exc_info=exc)
    return BackendError(f"binding {name!r} failed: {type(exc).__name__}: {said(exc)}", binding=name)


def said(exc: BaseException) -> str:
    """`str(exc)`, or a stand-in when the exception's own `__str__` fails (third-party code)."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - whatever a broken __str__ raises
        return "(its message could not be formatted)"


def stray_cancel(binding: Binding, exc: asyncio.CancelledError) -> BackendError:
    """What a CancelledError that the binding raised while nothing cancelled the request
    becomes (a library's inner task leaking its cancellation): the 502 naming the instance,
    not a request that vanishes without an answer."""
    name = binding.instance_name
    log.error("binding %s raised CancelledError while nothing cancelled it", name, exc_info=exc)
    message = f"binding {name!r} failed: CancelledError raised while nothing cancelled the request"
    return BackendError(message, binding=name)


def expect(binding: Binding, value: object, kind: type[T], method: str) -> T:
    """`value` when it is a `kind`; else the 502 naming the instance and what it returned."""
    if isinstance(value, kind):
        return value
    name = binding.instance_name
    message = (
        f"binding {name!r} returned {type(value).__name__} from {method}, not a {kind.__name__}"
    )
    raise BackendError(message, binding=name)


def expect_result(binding: Binding, value: object) -> Result:
    """`value` when it is a Result holding the types it declares; else the 502 naming the
    instance and what is wrong."""
    result = expect(binding, value, Result, "generate()")
    if (problem := result_problem(result)) is not None:
        name = binding.instance_name
        raise BackendError(f"binding {name!r} failed: {problem}", binding=name)
    return result


def expect_token_ids(binding: Binding, value: object, method: str) -> list[int]:
    """`value` as a list of token ids (any sequence of integers); else the 502 naming the
    instance."""
    try:
        if isinstance(value, str | bytes):
            raise TypeError
        return [operator.index(token) for token in value]  # type: ignore[attr-defined]
    except TypeError:
        name = binding.instance_name
        shown = type(value).__name__
        message = f"binding {name!r} returned {shown} from {method}, not a list of int"
        raise BackendError(message, binding=name) from None


async def guarded(binding: Binding, awaitable: Awaitable[T], timeout_s: float) -> T:
    """Await a binding call with a time limit, errors mapped by `BindingErrors`."""
    started = time.perf_counter()
    task = asyncio.current_task()
    cancelling = task.cancelling() if task is not None else 0
    with BindingErrors(binding, timeout_s):
        try:
            async with asyncio.timeout(timeout_s):  # its own cancel comes out as TimeoutError
                return await awaitable
        except asyncio.CancelledError as exc:
            if task is None or task.cancelling() > cancelling:  # really cancelled
                raise
            raise stray_cancel(binding, exc) from exc
        finally:
            trace = current_trace()
            if trace is not None:
                trace.waited_on(binding.instance_name, started)


async def listed_models(binding: Binding, timeout_s: float) -> list[ModelInfo]:
    """`binding.list_models()` guarded, and checked to be ModelInfo items (else the 502 naming
    the instance: one instance's slip must not spoil the listings that gather every one).

    Callers that ask while a call is under way share it. A failure is raised again, without
    waiting on the backend: for `LIST_FAILURE_MEMO_S` without calling, then, up to
    `LIST_FAILURE_STALE_S` after it, while the instance is asked again in the background (a
    frozen backend must not hold a listing for `timeout_s` every few seconds; one that answers
    again is listed from the next call on; an older failure is not trusted: callers wait on a
    new call). The listings that gather every instance (model lists, the pages) so do not wait
    on a backend whose last listing failed (calls shared by `shared_call`)."""
    failed = _list_failures.get(binding)
    if failed is not None and (age := time.monotonic() - failed[0]) < LIST_FAILURE_STALE_S:
        if age >= LIST_FAILURE_MEMO_S:
            shared_call(_list_calls, binding, lambda: _list_and_remember(binding, timeout_s))
        raise failed[1].with_traceback(None)
    call = shared_call(_list_calls, binding, lambda: _list_and_remember(binding, timeout_s))
    return await asyncio.shield(call)  # a caller that leaves does not cancel the others'


def shared_call(
    calls: SharedCalls[T], binding: Binding, start: Callable[[], Awaitable[T]]
) -> asyncio.Future[T]:
    """The call on `binding` under way for this request's fleet hop count, else `start()` as
    a new one; its error is raised to every caller that awaits it. Shared per hop count: a
    gateway listed as its own fleet node is asked again by that very call, one hop further,
    and that nested call waiting on the call that made it would hang until its timeout."""
    trace = current_trace()
    hops = trace.hops if trace is not None else 0  # outside requests: as a client's call
    by_hops = calls.setdefault(binding, {})
    call = by_hops.get(hops)
    if call is None or call.done():
        call = asyncio.ensure_future(start())
        call.add_done_callback(_retrieve)  # asyncio would log an error nobody retrieved
        by_hops[hops] = call
    return call


async def _list_and_remember(binding: Binding, timeout_s: float) -> list[ModelInfo]:
    try:
        models = _model_infos(binding, await guarded(binding, binding.list_models(), timeout_s))
    except LollmsError as exc:
        _list_failures[binding] = (time.monotonic(), exc)
        raise
    _list_failures.pop(binding, None)
    return models


def _retrieve(call: asyncio.Future[T]) -> None:
    if not call.cancelled():
        call.exception()  # asyncio logs an error nobody retrieved (every caller may have left)


def _model_infos(binding: Binding, models: object) -> list[ModelInfo]:
    if isinstance(models, list | tuple):
        odd = next((m for m in models if not isinstance(m, ModelInfo)), None)
        if odd is None:
            return list(models)
        shown = f"{type(models).__name__} of {type(odd).__name__}"
    else:
        shown = type(models).__name__
    name = binding.instance_name
    message = f"binding {name!r} returned {shown} from list_models(), not a list of ModelInfo"
    raise BackendError(message, binding=name)
