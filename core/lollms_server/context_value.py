"""A context variable set for a `with` block."""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ContextValue(Generic[T]):
    """`var` set to `value` inside the `with` block, which gives `value` (a class: a
    `@contextmanager` generator per request costs several times more)."""

    __slots__ = ("_token", "value", "var")

    def __init__(self, var: ContextVar[Any], value: T) -> None:
        self.var, self.value = var, value

    def __enter__(self) -> T:
        self._token: Token[Any] = self.var.set(self.value)
        return self.value

    def __exit__(self, *exc_info: object) -> None:
        self.var.reset(self._token)
