"""Plugin discovery: entry points of the `lollms_server` group, loaded one at a time."""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata as metadata
import logging
import os
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy
from aiohttp import web
from marshmallow import Schema

from . import hookspecs
from .binding_settings import SettingsSchema
from .bindings import CAPABILITIES, Binding
from .errors import ConfigError
from .masking import text_for_current_caller

log = logging.getLogger(__name__)

STRICT_ENV = "LOLLMS_STRICT_PLUGINS"
SHIPPED_PLUGINS = {  # binding type -> the plugin of this repository (plugins/<name>) that has it
    "openai": "lollms-openai",
    "llamacpp": "lollms-llamacpp",
    "ollama": "lollms-ollama",
    "diffusers": "lollms-diffusers",
    "audio": "lollms-audio",
    "lollms": "lollms-remote",
}


def _list_of(kind: type | None = None) -> Callable[[object], bool]:
    """A check: a list or tuple (of `kind` items)."""
    return lambda v: (
        isinstance(v, list | tuple) and (kind is None or all(isinstance(i, kind) for i in v))
    )


#: What each collect hook must return, checked before the core uses it: (said as, check).
HOOK_RESULTS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "register_bindings": ("a list of Binding subclasses", _list_of()),
    "register_personalities": ("a list of mappings", _list_of(Mapping)),
    "register_functions": ("a list of callables", _list_of()),
    "register_routes": ("a list of aiohttp route definitions", _list_of(web.AbstractRouteDef)),
    "extra_template_vars": ("a mapping", lambda v: isinstance(v, Mapping)),
}


@dataclass
class PluginInfo:
    """One installed plugin: where it came from and what it gave, or why it failed."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    binding_types: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Plugins:
    """The loaded plugins, their hooks and the binding classes they registered."""

    manager: pluggy.PluginManager
    infos: dict[str, PluginInfo]
    binding_classes: dict[str, type[Binding]] = field(default_factory=dict)

    @property
    def errors(self) -> dict[str, str]:
        """Plugin name -> load error, for every plugin that failed."""
        return {name: info.error for name, info in self.infos.items() if info.error}

    def shown_errors(self) -> dict[str, str]:
        """`errors` as the running request's caller may see them: file paths (an ImportError
        names the module's) cut to file names unless the caller is an admin."""
        return {name: text_for_current_caller(error) for name, error in self.errors.items()}

    def plugin_of(self, binding_type: str) -> PluginInfo | None:
        """The plugin that registered `binding_type`."""
        for info in self.infos.values():
            if binding_type in info.binding_types:
                return info
        return None

    def collect(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a hook on every plugin, one at a time, returning (plugin name, result) pairs.

        A plugin whose hook raises is recorded as broken instead of failing the others.
        """
        caller = getattr(self.manager.hook, hook_name)
        results: list[tuple[str, Any]] = []
        for impl in caller.get_hookimpls():
            try:
                value = impl.function(*(kwargs[name] for name in impl.argnames))
            except Exception as exc:  # noqa: BLE001 - third-party hook code
                self._record_failure(impl.plugin_name, f"{hook_name} failed: {exc!r}")
                continue
            if value is None:
                continue
            shape = HOOK_RESULTS.get(hook_name)
            if shape is not None and not shape[1](value):
                got = repr(value)[:200]
                self._record_failure(
                    impl.plugin_name, f"{hook_name} must return {shape[0]}; got {got}"
                )
                continue
            results.append((impl.plugin_name, value))
        return results

    def _record_failure(self, name: str, message: str) -> None:
        info = self.infos.setdefault(name, PluginInfo(name=name, module="?"))
        info.error = message
        log.error("plugin %s: %s", name, message)
        if strict_mode():
            raise ConfigError(f"plugin {name!r}: {message} ({STRICT_ENV}=1)")


def strict_mode() -> bool:
    """True when a broken plugin must stop the server."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def new_manager() -> pluggy.PluginManager:
    """A plugin manager that knows the lollms-server hook specs."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def load_plugins(extra: dict[str, object] | None = None, *, entry_points: bool = True) -> Plugins:
    """Load every entry-point plugin (and `extra` in-process ones) and their binding classes."""
    plugins = Plugins(manager=new_manager(), infos={})
    if entry_points:
        for entry in sorted(metadata.entry_points(group=hookspecs.PROJECT), key=lambda e: e.name):
            _load_entry_point(plugins, entry)
    for name, module in (extra or {}).items():
        _register(
            plugins, name, functools.partial(_identity, module), PluginInfo(name, repr(module))
        )
    _collect_binding_classes(plugins)
    return plugins


def _identity(value: object) -> object:
    return value


def _load_entry_point(plugins: Plugins, entry: metadata.EntryPoint) -> None:
    dist = entry.dist
    info = PluginInfo(
        name=entry.name,
        module=entry.value,
        distribution=dist.name if dist else None,
        version=dist.version if dist else None,
    )
    _register(plugins, entry.name, entry.load, info)


def _register(plugins: Plugins, name: str, load: Callable[[], object], info: PluginInfo) -> None:
    if plugins.manager.has_plugin(name):  # the loaded one keeps its row; this one gets its own
        loaded = plugins.infos[name]
        key = f"{name} ({info.distribution or info.module})"
        plugins.infos[key] = info
        plugins._record_failure(
            key,
            f"not loaded: plugin name {name!r} is taken by {loaded.distribution or '?'} "
            f"({loaded.module}); this one is {info.distribution or '?'} ({info.module}): "
            "rename one of the entry points",
        )
        return
    plugins.infos[name] = info
    try:
        plugin = load()
        plugins.manager.register(plugin, name=name)
    except Exception as exc:  # noqa: BLE001 - any import-time failure of third-party code
        plugins._record_failure(name, f"failed to load: {exc!r}")
        return
    callers = plugins.manager.get_hookcallers(plugin) or []
    if not callers:  # an entry point naming the Binding class or the hook function itself
        plugins._record_failure(
            name,
            f"implements no {hookspecs.PROJECT} hook: its entry point {info.module!r} names "
            f"{_shown(plugin)}; point the entry point at the module whose functions are "
            "marked @hookimpl",
        )
        return
    unknown = [c.name for c in callers if c.spec is None]
    if unknown:  # a misspelt hook would never be called
        known = ", ".join(sorted(n for n in vars(plugins.manager.hook) if hasattr(hookspecs, n)))
        plugins._record_failure(
            name, f"{unknown[0]!r} is not a {hookspecs.PROJECT} hook (hooks: {known})"
        )


def _shown(plugin: object) -> str:
    """A short description of what an entry point loaded."""
    if isinstance(plugin, types.ModuleType):
        return f"the module {plugin.__name__}, which has none"
    if isinstance(plugin, type):
        return f"the class {plugin.__qualname__}"
    if callable(plugin):
        return f"the function {getattr(plugin, '__qualname__', repr(plugin))}"
    return f"{type(plugin).__name__} {repr(plugin)[:80]}"


def _collect_binding_classes(plugins: Plugins) -> None:
    owners: dict[str, str] = {}
    for plugin_name, classes in plugins.collect("register_bindings"):
        for cls in classes:
            problem = _binding_class_problem(cls)
            if problem:
                plugins._record_failure(plugin_name, problem)
                continue
            if cls.name in owners:
                if plugins.binding_classes[cls.name] is cls:
                    continue  # the same class listed twice
                if owners[cls.name] == plugin_name:
                    first = plugins.binding_classes[cls.name].__qualname__
                    raise ConfigError(
                        f"plugin {plugin_name!r} registers binding type {cls.name!r} twice "
                        f"({first} and {cls.__qualname__}); give each class its own name"
                    )
                raise ConfigError(
                    f"binding type {cls.name!r} is registered by two plugins: "
                    f"{owners[cls.name]!r} and {plugin_name!r}; uninstall one of them"
                )
            owners[cls.name] = plugin_name
            plugins.binding_classes[cls.name] = cls
            plugins.infos[plugin_name].binding_types.append(cls.name)


def _binding_class_problem(cls: object) -> str | None:
    if not (isinstance(cls, type) and issubclass(cls, Binding)):
        return f"register_bindings returned {cls!r}, which is not a Binding subclass"
    if not cls.name or cls.name != cls.name.lower() or "/" in cls.name:
        return f"binding class {cls.__name__} needs a lowercase `name` without '/'"
    unknown = sorted(set(cls.capabilities) - CAPABILITIES)
    if unknown:
        known = ", ".join(sorted(CAPABILITIES))
        return (
            f"binding class {cls.__name__} declares unknown capabilities {unknown}; known: {known}"
        )
    return _schema_problem(cls)


def _schema_problem(cls: type[Binding]) -> str | None:
    """Why the core could not load settings with the class's `ConfigSchema`, or None."""
    schema = cls.ConfigSchema
    if not (isinstance(schema, type) and issubclass(schema, Schema)):
        return f"binding class {cls.__name__}: ConfigSchema is {schema!r}, not a marshmallow Schema"
    if not issubclass(schema, SettingsSchema):
        return None
    settings = getattr(schema, "Settings", None)
    if not (dataclasses.is_dataclass(settings) and isinstance(settings, type)):
        return (
            f"binding class {cls.__name__}: {schema.__name__} is a SettingsSchema without a "
            "`Settings` dataclass to load into"
        )
    loaded = sorted(schema().load_fields)
    fields = sorted(f.name for f in dataclasses.fields(settings) if f.init)
    if loaded != fields:
        return (
            f"binding class {cls.__name__}: {schema.__name__} loads {loaded} but its Settings "
            f"{settings.__name__} has {fields}: one dataclass field per schema field"
        )
    return None
