"""Upstream lollms_server binding types and how their instance settings become ours."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .plugins import SHIPPED_PLUGINS


def folder_of(root: Path, value: Any) -> Path | None:
    """A path setting resolved against upstream's server root (None when unset)."""
    if not isinstance(value, str) or not value:
        return None
    path = Path(value).expanduser()
    return (path if path.is_absolute() else root / path).resolve()


def _ollama(spec: dict[str, Any], root: Path, out: dict[str, Any]) -> set[str]:
    if spec.get("host"):
        out["host"] = str(spec["host"])
    return {"host"}


def _openai(spec: dict[str, Any], root: Path, out: dict[str, Any]) -> set[str]:
    if spec.get("base_url"):
        out["base_url"] = str(spec["base_url"])
    if spec.get("api_key"):
        out["api_key"] = str(spec["api_key"])
    elif not spec.get("base_url"):
        out["api_key_env"] = "OPENAI_API_KEY"  # upstream's fallback for OpenAI itself
    return {"base_url", "api_key"}


def _llamacpp(spec: dict[str, Any], root: Path, out: dict[str, Any]) -> set[str]:
    folder = folder_of(root, spec.get("models_folder"))
    if folder is not None:
        out["models_folders"] = [str(folder)]
    for theirs, ours in (("n_ctx", "n_ctx"), ("n_gpu_layers", "n_gpu_layers")):
        if isinstance(spec.get(theirs), int) and not isinstance(spec[theirs], bool):
            out[ours] = spec[theirs]
    if isinstance(spec.get("threads"), int) and spec["threads"] > 0:
        out["n_threads"] = spec["threads"]
    return {"models_folder", "n_ctx", "n_gpu_layers", "threads"}


def _diffusers(spec: dict[str, Any], root: Path, out: dict[str, Any]) -> set[str]:
    folder = folder_of(root, spec.get("models_folder"))
    if folder is not None:
        out["models_folders"] = [str(folder)]
    return {"models_folder"}


def _echo(spec: dict[str, Any], root: Path, out: dict[str, Any]) -> set[str]:
    return set()


Translator = Callable[[dict[str, Any], Path, dict[str, Any]], set[str]]
# upstream binding type -> (our binding type, the plugin that has it, settings translator)
TYPES: dict[str, tuple[str, str, Translator]] = {
    "ollama_binding": ("ollama", SHIPPED_PLUGINS["ollama"], _ollama),
    "openai_binding": ("openai", SHIPPED_PLUGINS["openai"], _openai),
    "llamacpp_binding": ("llamacpp", SHIPPED_PLUGINS["llamacpp"], _llamacpp),
    "diffusers_binding": ("diffusers", SHIPPED_PLUGINS["diffusers"], _diffusers),
    "dummy_binding": ("echo", "lollms-server (built in)", _echo),
}
WHY_NOT = {
    "server_path": "llama.cpp runs in process here (xllamacpp): no server binary",
    "additional_args": "llama.cpp command-line flags do not apply in process; see extra_args",
}


def instance_name(name: str) -> str:
    """An upstream instance name as ours allows it (letters, digits, '_', '-', '.'; max 64)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", name).lstrip("_.-")[:64]
    return cleaned or "instance"
