"""Bounds on what one request may send: body sizes, body time, form fields, list lengths.

The values come from `[server]` in the config; `CappedList` fields read the caps of the request
being validated through `LIMITS`, and check a list's length before any of its items.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from marshmallow import ValidationError, fields

from .context_value import ContextValue

ListCap = Literal["max_list_items", "max_token_ids"]


@dataclass(frozen=True)
class RequestLimits:
    """The `[server]` request bounds (bytes and counts)."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_text_body_bytes: int = 8 * 1024 * 1024
    body_timeout_s: float = 60.0
    max_json_values: int = 300_000
    max_list_items: int = 4096
    max_token_ids: int = 262_144
    max_form_fields: int = 1024
    max_form_parts: int = 64
    max_form_field_bytes: int = 1024 * 1024

    def body_limit(self, media: bool) -> tuple[int, str]:
        """The body size limit of a route and the config key that sets it."""
        if media:
            return self.max_body_bytes, "max_body_mb"
        return min(self.max_text_body_bytes, self.max_body_bytes), "max_text_body_mb"


DEFAULT_LIMITS = RequestLimits()
LIMITS: ContextVar[RequestLimits] = ContextVar("request_limits")


def limits_in_force(limits: RequestLimits) -> ContextValue[RequestLimits]:
    """Validate with these caps inside the `with` block."""
    return ContextValue(LIMITS, limits)


class CappedList(fields.List):  # type: ignore[type-arg]
    """A list whose length is checked before its items are: a `[server]` cap or a fixed one."""

    def __init__(self, cls_or_instance: Any, *, cap: ListCap | int, **kwargs: Any) -> None:
        super().__init__(cls_or_instance, **kwargs)
        self.cap = cap

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, (list, tuple)):
            limit = (
                self.cap
                if isinstance(self.cap, int)
                else getattr(LIMITS.get(DEFAULT_LIMITS), self.cap)
            )
            if len(value) > limit:
                where = f" (server setting {self.cap})" if isinstance(self.cap, str) else ""
                raise ValidationError(f"at most {limit} items{where}; got {len(value)}")
        return super()._deserialize(value, attr, data, **kwargs)
