"""Who is calling: the Principal of the current request, set once by the auth middleware."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Literal

from ..errors import Forbidden

Role = Literal["admin", "user"]
ROLES: tuple[Role, ...] = ("admin", "user")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a key's holder, or the local machine."""

    role: Role
    key_id: str | None = None
    name: str = ""
    client: str = ""
    local: bool = False
    allowed_bindings: frozenset[str] | None = None
    allowed_models: frozenset[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        """True for the admin role."""
        return self.role == "admin"

    def check_target(self, instance: str, model: str) -> None:
        """Raise Forbidden unless this principal may use `<instance>/<model>`."""
        if self.allowed_bindings is not None and instance not in self.allowed_bindings:
            raise Forbidden(f"this key may not use binding instance {instance!r}")
        if self.allowed_models is not None and not (
            model in self.allowed_models or f"{instance}/{model}" in self.allowed_models
        ):
            raise Forbidden(f"this key may not use model {instance}/{model}")


ANONYMOUS = Principal(role="user", name="anonymous")
_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "lollms_principal", default=None
)


def set_current(principal: Principal) -> contextvars.Token[Principal | None]:
    """Make `principal` the caller of the running request (the auth middleware does this)."""
    return _current.set(principal)


def reset_current(token: contextvars.Token[Principal | None]) -> None:
    """Undo `set_current`."""
    _current.reset(token)


def current() -> Principal | None:
    """The caller of the running request, or None outside a request (CLI, start-up)."""
    return _current.get()
