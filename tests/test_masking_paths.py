"""Server file paths in errors a user key reads: cut to file names; routes and URLs kept."""

from __future__ import annotations

import pytest

from lollms_server.errors import ModelLoadFailed
from lollms_server.masking import for_caller, mask_paths
from lollms_server.security.principal import Principal


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("cannot serve /srv/lollms/models/ttt/m.gguf: bad", "cannot serve m.gguf: bad"),
        ("failed to load model '/home/me/.lollms/m.gguf'", "failed to load model 'm.gguf'"),
        ("PosixPath('/tmp/d/models/')", "PosixPath('models')"),
        ("--model=/var/lib/x.gguf", "--model=x.gguf"),
        ("C:\\Users\\me\\m.gguf broke", "m.gguf broke"),
        ("POST /v1/chat/completions or /api/v1/generate", None),
        ("http://127.0.0.1:9601/tmp/x and https://h/home/y", None),
        ("relative models/x.gguf", None),
    ],
)
def test_mask_paths(text: str, shown: str | None) -> None:
    assert mask_paths(text) == (text if shown is None else shown)


def test_only_admins_get_the_error_itself() -> None:
    error = ModelLoadFailed("no /srv/data/models/m.gguf", binding="local", details={"at": "/srv/x"})
    admin, user = Principal(role="admin"), Principal(role="user")
    assert for_caller(error, admin) is error
    for caller in (user, None):
        shown = for_caller(error, caller)
        assert isinstance(shown, ModelLoadFailed) and shown.binding == "local"
        assert (shown.message, str(shown), shown.details) == ("no m.gguf", "no m.gguf", {"at": "x"})
    assert error.message == "no /srv/data/models/m.gguf"  # the log keeps the whole message
