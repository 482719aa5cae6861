"""An upstream ParisNeo/lollms_server configuration read and turned into our config mapping.

Upstream keeps a main config (`lollms_configs/main_config.yaml|toml|json`, ConfigGuard sections
server, paths, security, defaults, bindings_map, resource_manager, webui, logging,
personalities_config) and one file per binding instance (`<config dir>/bindings/<name>.yaml`);
its older releases kept everything in one `config.toml` with `[bindings.<name>]` tables.
Relative paths are relative to upstream's server root.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config_import_types import TYPES, WHY_NOT, folder_of, instance_name
from .errors import ConfigError

MAIN_NAMES = tuple(f"main_config{ext}" for ext in (".yaml", ".yml", ".toml", ".json"))
INSTANCE_EXTENSIONS = (".yaml", ".yml", ".toml", ".json")
GENERATION_DEFAULTS = ("ttt", "tti", "tts", "stt", "ttv", "ttm")
LOG_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warning", "ERROR": "error"}
LOG_LEVELS["CRITICAL"] = "error"
CONSUMED = {"type", "binding_instance_name", "__version__", "default_model"}


@dataclass
class Report:
    """What the import mapped, could not map (with why) and what changed meaning."""

    mapped: list[str] = field(default_factory=list)
    not_mapped: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)


@dataclass
class Upstream:
    """An upstream configuration as read: the main mapping, instance files, the server root."""

    main_file: Path
    root: Path
    main: dict[str, Any]
    instances: dict[str, dict[str, Any]]
    instance_files: dict[str, Path]


def read_file(path: Path) -> dict[str, Any]:
    """A YAML, TOML or JSON file as a mapping (ConfigGuard's full export unwrapped)."""
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not readable as {path.suffix[1:]}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("values"), dict) and "schema" in data:
        data = data["values"]  # ConfigGuard's "full" save mode wraps the values
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a mapping (encrypted? decrypt it with upstream first)")
    return data


def locate(path: Path, root: Path | None = None) -> Upstream:
    """Find upstream's main config from a server root, its config folder or the file itself."""
    path = path.expanduser().resolve()
    if path.is_dir():
        candidates = [path / "lollms_configs" / n for n in MAIN_NAMES]
        candidates += [path / n for n in MAIN_NAMES] + [path / "config.toml"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ConfigError(
                f"{path}: no upstream config found (looked for lollms_configs/main_config.*, "
                "main_config.* and config.toml)"
            )
        path = found
    elif not path.is_file():
        raise ConfigError(f"{path}: no such file or folder")
    main = read_file(path)
    if root is None:
        root = _server_root(path, main)
    instances, files = _instance_files(path, main)
    return Upstream(path, root.resolve(), main, instances, files)


def _server_root(main_file: Path, main: Mapping[str, Any]) -> Path:
    """Upstream resolves paths against its server root: the folder above `config_base_dir`."""
    if not main_file.name.startswith("main_config"):
        return main_file.parent  # the older single config.toml sits in the server root
    base = _section(main, "paths").get("config_base_dir") or "lollms_configs"
    base_path = Path(str(base))
    folder = main_file.parent
    if not base_path.is_absolute() and folder.parts[-len(base_path.parts) :] == base_path.parts:
        return folder.parents[len(base_path.parts) - 1]
    return folder.parent


def _instance_files(
    main_file: Path, main: Mapping[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, Path]]:
    """Instance configs: `bindings_map` + one file each, or the older inline `[bindings.x]`."""
    instances: dict[str, dict[str, Any]] = {}
    files: dict[str, Path] = {}
    inline = main.get("bindings")
    if isinstance(inline, dict):
        for name, spec in inline.items():
            if isinstance(spec, dict):
                instances[str(name)] = dict(spec)
                files[str(name)] = main_file
    folder_name = _section(main, "paths").get("instance_bindings_folder") or "bindings"
    folder = Path(str(folder_name))
    folder = folder if folder.is_absolute() else main_file.parent / folder
    for name, type_name in _section(main, "bindings_map").items():
        found = next(
            (
                folder / f"{name}{e}"
                for e in INSTANCE_EXTENSIONS
                if (folder / f"{name}{e}").is_file()
            ),
            None,
        )
        if found is None:
            instances[str(name)] = {"type": type_name, "__missing__": str(folder)}
            continue
        try:
            spec = read_file(found)
        except ConfigError as exc:
            instances[str(name)] = {"type": type_name, "__unreadable__": str(exc)}
            continue
        spec.setdefault("type", type_name)
        instances[str(name)], files[str(name)] = spec, found
    return instances, files


def _section(main: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = main.get(name)
    return dict(value) if isinstance(value, dict) else {}


def convert(
    upstream: Upstream, installed: Mapping[str, Callable[[dict[str, Any]], str | None]]
) -> tuple[dict[str, Any], list[str], Report]:
    """Our config mapping, upstream's plain API keys (to become stored keys) and the report.

    `installed` maps our installed binding types to a settings check (None when valid)."""
    report = Report()
    main, root = upstream.main, upstream.root
    raw: dict[str, Any] = {"server": {}, "bindings": {}, "defaults": {}}
    _server(main, raw, report)
    names = _bindings(upstream, installed, raw, report)
    _defaults(main, names, raw, report)
    _paths(main, root, raw, report)
    _rest(main, raw, report)
    security = _section(main, "security")
    listed = security.get("allowed_api_keys")
    keys = [str(k) for k in listed if str(k).strip()] if isinstance(listed, list) else []
    if listed and not isinstance(listed, list):
        report.not_mapped.append("security.allowed_api_keys: not a list (value not shown)")
    if security.get("encryption_key"):
        report.not_mapped.append(
            "security.encryption_key: lollms.toml is plain text; keep secrets in the "
            "environment (api_key_env) and the file readable only by the server's user"
        )
    report.changed.append(
        "security: requests from this machine need no key ([security] local_access = true); "
        "set it to false to require a key for every request as upstream did"
    )
    return raw, keys, report


def _server(main: Mapping[str, Any], raw: dict[str, Any], report: Report) -> None:
    server = _section(main, "server")
    if isinstance(server.get("host"), str):
        raw["server"]["host"] = server["host"]
        report.mapped.append("server.host -> [server] host")
    port = str(server.get("port", ""))  # upstream's own example spells it as a string
    if port.isdigit() and 0 < int(port) < 65536:
        raw["server"]["port"] = int(port)
        report.mapped.append("server.port -> [server] port")
    elif "port" in server:
        report.not_mapped.append(f"server.port {server['port']!r}: not a port number")
    listed = server.get("allowed_origins")
    origins = [str(o) for o in listed] if isinstance(listed, list) else []
    kept = [o for o in origins if o not in ("*", "null")]
    if kept:
        raw.setdefault("security", {})["cors_origins"] = kept
        report.mapped.append("server.allowed_origins -> [security] cors_origins")
    for odd in sorted(set(origins) - set(kept)):
        report.not_mapped.append(
            f"server.allowed_origins {odd!r}: origins are allowed by exact name only "
            "(no wildcard, no file:// pages)"
        )
    level = _section(main, "logging").get("log_level")
    if isinstance(level, str) and level.upper() in LOG_LEVELS:
        raw["server"]["log_level"] = LOG_LEVELS[level.upper()]
        report.mapped.append("logging.log_level -> [server] log_level")


def _bindings(
    upstream: Upstream,
    installed: Mapping[str, Callable[[dict[str, Any]], str | None]],
    raw: dict[str, Any],
    report: Report,
) -> dict[str, str]:
    """Each upstream instance as `[bindings.<name>]`; upstream name -> ours for those kept."""
    names: dict[str, str] = {}
    max_tokens = _section(upstream.main, "defaults").get("default_max_output_tokens")
    for name, spec in upstream.instances.items():
        where = f"binding instance {name!r}"
        if "__missing__" in spec:
            report.not_mapped.append(f"{where}: no config file in {spec['__missing__']}")
            continue
        if "__unreadable__" in spec:
            report.not_mapped.append(f"{where}: {spec['__unreadable__']}")
            continue
        theirs = str(spec.get("type"))
        if theirs not in TYPES:
            report.not_mapped.append(
                f"{where}: upstream binding type {theirs!r} has no counterpart here "
                f"(types: {', '.join(sorted(t for t, _, _ in TYPES.values()))})"
            )
            continue
        ours, plugin, translate = TYPES[theirs]
        if ours not in installed:
            report.not_mapped.append(
                f"{where}: binding type {ours!r} is not installed (pip install {plugin})"
            )
            continue
        settings: dict[str, Any] = {}
        known = translate(spec, upstream.root, settings) | CONSUMED
        problem = installed[ours](settings)
        if problem:
            report.not_mapped.append(f"{where}: its settings do not fit {ours!r}: {problem}")
            continue
        new_name = instance_name(name)
        entry: dict[str, Any] = {"type": ours}
        if spec.get("default_model") and ours != "echo":
            entry["default_model"] = str(spec["default_model"])
        elif spec.get("default_model"):
            report.not_mapped.append(f"{where}.default_model: the echo binding has its own models")
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0:
            entry["default_max_tokens"] = max_tokens
        raw["bindings"][new_name] = {**entry, **settings}
        names[name] = new_name
        renamed = "" if new_name == name else f" (renamed {new_name!r}: names allow [A-Za-z0-9_.-])"
        report.mapped.append(f"{where} ({theirs}) -> [bindings.{new_name}] type {ours!r}{renamed}")
        for key in sorted(set(spec) - known):
            why = WHY_NOT.get(key, f"the {ours} binding has no such setting")
            report.not_mapped.append(f"{where}.{key}: {why}")
    if isinstance(max_tokens, int) and names:
        report.changed.append(
            "defaults.default_max_output_tokens: upstream's one global default is now each "
            "instance's default_max_tokens"
        )
    return names


def _defaults(
    main: Mapping[str, Any], names: Mapping[str, str], raw: dict[str, Any], report: Report
) -> None:
    defaults = _section(main, "defaults")
    for kind in GENERATION_DEFAULTS:
        binding, model = defaults.get(f"{kind}_binding"), defaults.get(f"{kind}_model")
        if not binding:
            continue
        if binding not in names:
            report.not_mapped.append(
                f"defaults.{kind}_binding {binding!r}: that instance was not imported"
            )
            continue
        echo = raw["bindings"][names[binding]]["type"] == "echo"  # upstream's dummy takes any
        raw["defaults"][kind] = (
            f"{names[binding]}/{model}" if model and not echo else names[binding]
        )
        report.mapped.append(f"defaults.{kind}_binding/{kind}_model -> [defaults] {kind}")
    if "default_context_size" in defaults:
        report.not_mapped.append(
            "defaults.default_context_size: the context size is each model's own "
            "(llama.cpp: n_ctx of the instance)"
        )


def _paths(main: Mapping[str, Any], root: Path, raw: dict[str, Any], report: Report) -> None:
    paths = _section(main, "paths")
    for kind in ("personalities", "functions"):
        folders = []
        for key in (f"{kind}_folder", f"example_{kind}_folder"):
            folder = folder_of(root, paths.get(key))
            if folder is not None and folder.is_dir():
                folders.append(str(folder))
                report.mapped.append(f"paths.{key} -> [{kind}] folders (used in place)")
            elif paths.get(key):
                report.not_mapped.append(f"paths.{key}: {folder} is not a folder")
        if folders:
            raw[kind] = {"folders": folders}
    if raw.get("functions"):
        report.changed.append(
            "functions: files in the function folders register only callables marked with "
            "@function (from lollms_server.service.functions import function; upstream's "
            "function modules need that decorator)"
        )
    for key in ("bindings_folder", "example_bindings_folder"):
        if paths.get(key):
            report.not_mapped.append(
                f"paths.{key}: binding types are plugins (Python packages with a "
                "lollms_server entry point) here, not folders of upstream Binding classes"
            )
    if paths.get("models_folder"):
        report.not_mapped.append(
            "paths.models_folder: models are found per instance (llamacpp/diffusers "
            "models_folders) and in <data_dir>/models"
        )


def _rest(main: Mapping[str, Any], raw: dict[str, Any], report: Report) -> None:
    manager = _section(main, "resource_manager")
    if isinstance(manager.get("queue_timeout"), (int, float)):
        raw["resources"] = {"queue_timeout_s": float(manager["queue_timeout"])}
        report.mapped.append("resource_manager.queue_timeout -> [resources] queue_timeout_s")
    for key in ("gpu_strategy", "gpu_limit"):
        if key in manager:
            report.not_mapped.append(
                f"resource_manager.{key}: GPU use is planned per model from measured memory "
                "([resources] gpu_budget, devices) and concurrency per instance (max_concurrent)"
            )
    if "enable_ui" in _section(main, "webui"):
        report.not_mapped.append("webui.enable_ui: the web pages are always served (same keys)")
    for name, settings in _section(main, "personalities_config").items():
        if isinstance(settings, dict) and settings.get("enabled") is False:
            report.not_mapped.append(
                f"personalities_config.{name}.enabled = false: there is no per-personality "
                "switch; move its folder out of the personalities folders"
            )
