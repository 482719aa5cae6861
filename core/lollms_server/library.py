"""The running server's personalities and functions: loaded at start, reloaded on demand."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from .config import Config
from .keys import AUDIT, CONFIG, FUNCTIONS, METRICS, PERSONALITIES, PLUGINS
from .plugins import Plugins
from .security.principal import current as current_principal
from .service import personalities
from .service.functions import CallObserver, CallOutcome, FunctionRegistry
from .service.personalities import PersonalityStore
from .trace import current_trace

EXAMPLES_DIR = Path(__file__).parent / "examples"
log = logging.getLogger(__name__)


def load_personalities(config: Config, plugins: Plugins) -> PersonalityStore:
    """Personalities from every source in the documented order."""
    examples = [EXAMPLES_DIR / "personalities"] if config.personality_examples else []
    return personalities.load_personalities(
        [config.personalities_dir, *config.personality_folders],
        plugins.collect("register_personalities"),
        examples,
    )


def load_functions(config: Config, plugins: Plugins) -> FunctionRegistry:
    """Functions from the functions folders, then from plugins."""
    functions = FunctionRegistry(
        allowed_unsafe=tuple(config.functions.allow_unsafe),
        timeout_s=config.functions.timeout_s,
        max_result_chars=config.functions.max_result_chars,
    )
    functions.load_folders([config.functions_dir, *config.functions.folders])
    for plugin_name, funcs in plugins.collect("register_functions"):
        functions.add_callables(funcs, f"plugin {plugin_name}")
    return functions


def call_observer(app: web.Application) -> CallObserver:
    """What every function call leaves behind: metrics, and an audit event with its caller."""
    metrics, audit = app[METRICS], app[AUDIT]

    async def observe(outcome: CallOutcome, seconds: float) -> None:
        status = "ok" if outcome.error is None else "error"
        metrics.child(metrics.function_calls, outcome.name, status).inc()
        metrics.child(metrics.function_seconds, outcome.name).observe(seconds)
        principal = current_principal()
        detail = {"function": outcome.name, "outcome": status}
        if outcome.error is not None:
            detail["error"] = outcome.error[:500]
        await audit.record(
            "function_call",
            key_id=principal.key_id if principal else None,
            client=principal.client if principal else None,
            request_id=trace.request_id if (trace := current_trace()) else None,
            duration_ms=round(seconds * 1000, 3),
            detail=detail,
        )

    return observe


def reload_library(app: web.Application) -> dict[str, Any]:
    """Read personalities and functions again (added, changed and removed folders and files)."""
    config, plugins = app[CONFIG], app[PLUGINS]
    store, registry = app[PERSONALITIES], app[FUNCTIONS]
    store.replace_with(load_personalities(config, plugins))
    registry.replace_with(load_functions(config, plugins))
    log.info(
        "reloaded %d personalities and %d functions", len(store.by_name), len(registry.by_name)
    )
    return {
        "personalities": sorted(store.by_name),
        "functions": sorted(registry.by_name),
        "problems": [*store.problems, *registry.problems],
    }
