"""Ollama's wire vocabulary shared by the Ollama face and the ollama binding: the options
passed on under their own names and the `keep_alive` field."""

from __future__ import annotations

import math
import re
from typing import Any

from marshmallow import ValidationError, fields

DURATION = re.compile(r"^-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
#: The longest keep_alive, as on the other faces (about 31 years; negative is forever).
MAX_KEEP_ALIVE_S = 10**9
#: Ollama options a request may carry under their Ollama names: passed on as they are.
PASSED_ON_OPTIONS = (
    "num_ctx",
    "num_keep",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "num_thread",
    "repeat_last_n",
    "min_p",
    "typical_p",
    "tfs_z",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "penalize_newline",
    "numa",
    "low_vram",
    "use_mmap",
    "use_mlock",
)


class KeepAlive(fields.Field[float | str]):
    """`keep_alive`: seconds as a number, or a duration string ("5m", "1h30m", "-1", "0")."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float | str:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValidationError('must be seconds or a duration such as "5m" or "-1"')
        if isinstance(value, str):
            text = value.strip()
            if not (DURATION.match(text) or _is_number(text)):
                raise ValidationError('must be seconds or a duration such as "5m" or "-1"')
        try:
            seconds = keep_alive_seconds(value)
        except OverflowError:
            seconds = math.inf
        if not seconds <= MAX_KEEP_ALIVE_S:  # NaN too
            raise ValidationError(f"must be at most {MAX_KEEP_ALIVE_S} seconds (negative: forever)")
        return value


class KeepAliveSeconds(KeepAlive):
    """`keep_alive` loaded as seconds: a number or an Ollama duration; negative is forever."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        return keep_alive_seconds(super()._deserialize(value, attr, data, **kwargs))


def keep_alive_seconds(value: float | str) -> float:
    """Seconds of an Ollama `keep_alive` (a number of seconds or a Go duration like "5m")."""
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    parts = DURATION_PART.findall(text)
    return sign * sum(float(number) * UNIT_SECONDS[unit] for number, unit in parts)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return len(text) <= 32
