"""JSON encoders built once: `JSONEncoder.encode` builds a C encoder (and a closure) per call."""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as json_encoder
from typing import Any

Encode = Callable[[Any], str]


def one_shot(encoder: json.JSONEncoder) -> Encode:
    """`encoder.encode`, the same text and errors, with its C encoder built once.

    For values of our own making, never circular: no circularity markers (a circular value
    raises RecursionError, not ValueError). Without the C accelerator, or with an indent,
    `encoder.encode` itself."""
    make = getattr(json_encoder, "c_make_encoder", None)  # not in typeshed: _json's
    if make is None or encoder.indent is not None:
        return encoder.encode
    strings = json_encoder.encode_basestring_ascii if encoder.ensure_ascii else None
    encode = make(
        None, encoder.default, strings or json_encoder.encode_basestring, None,
        encoder.key_separator, encoder.item_separator,
        encoder.sort_keys, encoder.skipkeys, encoder.allow_nan,
    )  # fmt: skip
    whole = encoder.encode

    def encoded(value: Any) -> str:
        if isinstance(value, str):  # a bare string: encode's own path
            return whole(value)
        return "".join(encode(value, 0))

    return encoded


dumps = one_shot(json.JSONEncoder())  # `json.dumps(value)`, for `web.json_response(dumps=...)`
