"""The one masking of credentials inside text: URL user info (`user:password@`) and
secret-named query parameters (`?token=`, `?key=`, `api_key=`, ...), for settings and logs;
and of server file paths in errors shown to callers who may not see them."""

from __future__ import annotations

import os
import re
from typing import Any, TypeVar

from .errors import LollmsError
from .security.principal import Principal, current

E = TypeVar("E", bound=LollmsError)

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


#: first components of absolute paths on this machine (and the usual ones elsewhere): an
#: absolute path in a message starts with one of them; an API route (/v1/..., /api/...) does not
_ROOTS = frozenset(
    {"home", "root", "tmp", "var", "srv", "opt", "usr", "etc", "mnt", "media", "data", "run"}
    | {"Users", "Volumes", "private", "workspace", "nix", "proc", "dev", "app"}
    | set(os.listdir("/") if os.path.isdir("/") else ())
)
_POSIX_PATH = re.compile(r"(?<![\w.~/:@-])/([^\s\"'`<>|,;:()\[\]{}/]+)[^\s\"'`<>|,;:()\[\]{}]*")
_WINDOWS_PATH = re.compile(r"(?<![\w])[A-Za-z]:\\[^\s\"'`<>|,;()\[\]{}]*")


def _file_name(match: re.Match[str]) -> str:
    path = match.group(0)
    if match.re is _POSIX_PATH and match.group(1) not in _ROOTS:
        return path
    return re.split(r"[/\\]", path.rstrip("/\\"))[-1] or path


def mask_paths(text: str) -> str:
    """`text` with every absolute file path in it (`/srv/lollms/models/x.gguf`, `C:\\m\\x.gguf`)
    cut to its file name (`x.gguf`): what a caller who may not see the server's folders gets."""
    if "/" in text:
        text = _POSIX_PATH.sub(_file_name, text)
    if ":\\" in text:
        text = _WINDOWS_PATH.sub(_file_name, text)
    return text


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_paths(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_masked(item) for item in value)
    return value


def for_caller(exc: E, principal: Principal | None) -> E:
    """`exc` as `principal` may see it: for a user key (or an unknown caller), a copy whose
    message and details have every server file path cut to its file name (the server log keeps
    `exc` whole); an admin key and the local machine get `exc` itself."""
    if principal is not None and principal.is_admin:
        return exc
    message, details = mask_paths(exc.message), _masked(exc.details)
    if message == exc.message and details == exc.details:
        return exc
    shown = type(exc).__new__(type(exc))
    shown.__dict__.update(exc.__dict__)
    shown.args, shown.message, shown.details = (message,), message, details
    return shown


def for_current_caller(exc: E) -> E:
    """`for_caller` for the caller of the running request (an error inside a stream)."""
    return for_caller(exc, current())


def text_for_current_caller(text: str) -> str:
    """`text` (a health detail, a circuit's last error) as the running request's caller may
    see it: its file paths cut to file names unless the caller is an admin."""
    principal = current()
    return text if principal is not None and principal.is_admin else mask_paths(text)
