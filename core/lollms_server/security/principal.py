"""Who is calling: the Principal of the current request, set once by the auth middleware."""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
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

    def may_use_instance(self, instance: str) -> bool:
        """True when this principal may use some model of binding instance `instance`."""
        if self.allowed_bindings is not None and instance not in self.allowed_bindings:
            return False
        return self.allowed_models is None or any(
            split_entry(entry)[0] == instance for entry in self.allowed_models
        )

    def may_use(self, instance: str, model: str) -> bool:
        """True when this principal may use model `model` of instance `instance`.

        An `allowed_models` entry names an instance and a model (`<instance>/<model>`, split
        at the first `/`); both must match exactly, so `echo/echo` never admits the model
        `echo/echo` of another instance. An entry without an instance admits nothing.
        """
        if self.allowed_bindings is not None and instance not in self.allowed_bindings:
            return False
        return self.allowed_models is None or (instance, model) in {
            split_entry(entry) for entry in self.allowed_models
        }

    def check_target(self, instance: str, model: str) -> None:
        """Raise Forbidden unless this principal may use `<instance>/<model>`."""
        if self.allowed_bindings is not None and instance not in self.allowed_bindings:
            raise Forbidden(f"this key may not use binding instance {instance!r}")
        if not self.may_use(instance, model):
            raise Forbidden(f"this key may not use model {model!r} of instance {instance!r}")


def split_entry(entry: str) -> tuple[str, str]:
    """An allow-list entry `<instance>/<model>` as (instance, model); ('', '') when malformed."""
    instance, sep, model = entry.partition("/")
    return (instance, model) if sep and instance and model else ("", "")


ANONYMOUS = Principal(role="user", name="anonymous")
NOBODY = Principal(role="user", name="nobody", allowed_bindings=frozenset())  # may use nothing
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


def check_served(instance: str, named: str, served: str) -> None:
    """Forbidden unless the running request's caller may use `served`, the model a binding
    picked to serve a request for `named` (a voice's instance default whisper model...); the
    refusal names only what was named. Nothing is checked outside a request."""
    principal = _current.get()
    if principal is not None and served != named and not principal.may_use(instance, served):
        raise Forbidden(
            f"this key may not use model {named!r} of instance {instance!r} for this: "
            "another model of the instance would serve it"
        )


def usable_models(instance: str, names: Iterable[str]) -> list[str]:
    """The `names` (models of `instance`) that the running request's caller may use, for an
    error to list without telling a limited key of others; all of them outside a request."""
    principal = _current.get()
    return [name for name in names if principal is None or principal.may_use(instance, name)]


def caller() -> Principal:
    """The caller of the running request; Forbidden when none is known (fail closed).

    A thread a script starts itself does not carry the request's caller: work done from it
    (e.g. `context.generate`) is refused rather than run for nobody.
    """
    principal = _current.get()
    if principal is None:
        raise Forbidden(
            "no caller is known for this generation (it was started outside a request, e.g. "
            "from a thread a script started itself); refused"
        )
    return principal
