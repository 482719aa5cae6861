"""`@function`: the mark that exposes a callable as a function (a tool); plugins import it
from `lollms_server.sdk`, function files from `lollms_server.service.functions`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])
MARK = "__lollms_function__"


@overload
def function(func: F, /) -> F: ...


@overload
def function(
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    unsafe: bool = False,
    timeout_s: float | None = None,
) -> Callable[[F], F]: ...


def function(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    unsafe: bool = False,
    timeout_s: float | None = None,
) -> F | Callable[[F], F]:
    """Mark a callable as a function, bare (`@function`) or with options (`@function(...)`);
    `unsafe` ones (files, shell, network) are off by default."""

    def mark(marked: F) -> F:
        marks = {"name": name, "description": description, "parameters": parameters}
        setattr(marked, MARK, {**marks, "unsafe": unsafe, "timeout_s": timeout_s})
        return marked

    return mark if func is None else mark(func)
