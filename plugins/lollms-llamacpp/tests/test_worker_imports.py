"""A model's worker process imports only what it needs (every load pays for its imports)."""

from __future__ import annotations

from lollms_server.testing import modules_imported_by


def test_worker_does_not_import_the_server() -> None:
    heavy = ("lollms_server", "aiohttp", "marshmallow")
    assert modules_imported_by("import lollms_llamacpp.worker", heavy) == []


def test_the_binding_is_still_importable_from_the_package() -> None:
    from lollms_llamacpp import LlamaCppBinding

    assert LlamaCppBinding.name == "llamacpp"


def test_the_binding_does_not_import_numpy_at_start_up() -> None:
    """The server imports every installed plugin at start; gguf pulls numpy (~0.1-0.3 s)."""
    assert modules_imported_by("import lollms_llamacpp.binding", ("numpy", "gguf")) == []
