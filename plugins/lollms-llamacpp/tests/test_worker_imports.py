"""A model's worker process imports only what it needs (every load pays for its imports)."""

from __future__ import annotations

import subprocess
import sys


def test_worker_does_not_import_the_server() -> None:
    code = (
        "import sys, lollms_llamacpp.worker\n"
        "heavy = [m for m in ('lollms_server', 'aiohttp', 'marshmallow') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_binding_is_still_importable_from_the_package() -> None:
    from lollms_llamacpp import LlamaCppBinding

    assert LlamaCppBinding.name == "llamacpp"


def test_the_binding_does_not_import_numpy_at_start_up() -> None:
    """The server imports every installed plugin at start; gguf pulls numpy (~0.1-0.3 s)."""
    code = (
        "import sys, lollms_llamacpp.binding\n"
        "print(','.join(m for m in ('numpy', 'gguf') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
