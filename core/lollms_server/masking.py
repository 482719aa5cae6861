"""The one masking of credentials inside text: URL user info (`user:password@`) and
secret-named query parameters (`?token=`, `?key=`, `api_key=`, ...), for settings and logs."""

from __future__ import annotations

import re

MASK = "***"
SECRET_PARAM_WORDS = ("key", "token", "secret", "passw", "pwd", "auth", "sig", "credential")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>`]+")
_USER_INFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")
_PARAM = re.compile(r"([?&;#])([^=&;#\s]+)=([^&;#\s]*)")


def _mask_param(match: re.Match[str]) -> str:
    separator, name, value = match.groups()
    lowered = name.lower()
    if value and any(word in lowered for word in SECRET_PARAM_WORDS):
        return f"{separator}{name}={MASK}"
    return match.group(0)


def mask_url(url: str) -> str:
    """`url` with its user info and secret-named query parameters replaced by '***'."""
    return _PARAM.sub(_mask_param, _USER_INFO.sub(rf"\g<1>{MASK}@", url))


def mask_text(text: str) -> str:
    """`text` with every URL in it masked (see `mask_url`)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda match: mask_url(match.group(0)), text)
