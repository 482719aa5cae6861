"""Ollama's wire vocabulary shared by the Ollama face and the ollama binding: the options
passed on under their own names and the `keep_alive` field."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError, fields

DURATION = re.compile(r"^-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
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
        return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return len(text) <= 32
