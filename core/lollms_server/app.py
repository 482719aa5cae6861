"""The application factory: config + plugins -> a ready aiohttp Application."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from . import keys
from .api import lollms, openai, openapi
from .api.middleware import error_middleware
from .bindings import Binding
from .config import Config
from .functions import FunctionRegistry
from .generation import GenerationService
from .personalities import PersonalityStore
from .plugins import Plugins, load_plugins
from .registry import build_registry
from .store import Store
from .web import pages

log = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 10.0


def create_app(
    config: Config,
    plugins: Plugins | None = None,
    *,
    with_store: bool = True,
) -> web.Application:
    """Build the application; raises ConfigError when the config does not fit the plugins."""
    plugins = plugins or load_plugins()
    registry = build_registry(config, plugins)
    app = web.Application(middlewares=[error_middleware], client_max_size=config.max_body_bytes)
    app[keys.CONFIG] = config
    app[keys.PLUGINS] = plugins
    app[keys.REGISTRY] = registry
    app[keys.PERSONALITIES] = _load_personalities(config, plugins)
    app[keys.FUNCTIONS] = _load_functions(plugins)
    app[keys.STARTED_AT] = time.time()
    app.router.add_routes(lollms.routes)
    app.router.add_routes(openai.routes)
    app.router.add_routes(openapi.routes)
    app.router.add_routes(pages.routes)
    pages.setup_templates(app, config.data_dir / "templates")
    _mount_plugin_routes(app, plugins)
    app.cleanup_ctx.append(_store_context if with_store else _no_store_context)
    app.cleanup_ctx.append(_bindings_context)
    return app


def _load_personalities(config: Config, plugins: Plugins) -> PersonalityStore:
    store = PersonalityStore()
    store.load_folders([config.personalities_dir, *config.personality_folders])
    for plugin_name, items in plugins.collect("register_personalities"):
        store.load_mappings(items, f"plugin {plugin_name}")
    return store


def _load_functions(plugins: Plugins) -> FunctionRegistry:
    functions = FunctionRegistry()
    for plugin_name, funcs in plugins.collect("register_functions"):
        functions.add_callables(funcs, f"plugin {plugin_name}")
    return functions


def _mount_plugin_routes(app: web.Application, plugins: Plugins) -> None:
    for plugin_name, route_defs in plugins.collect("register_routes"):
        sub = web.Application()
        sub.router.add_routes(route_defs)
        app.add_subapp(f"/-/{plugin_name}/", sub)


async def _store_context(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    store = Store(Path(config.database_path))
    app[keys.STORE] = store
    app[keys.GENERATION] = _service(app, store)
    yield
    store.close()


async def _no_store_context(app: web.Application) -> AsyncIterator[None]:
    app[keys.GENERATION] = _service(app, None)
    yield


def _service(app: web.Application, store: Store | None) -> GenerationService:
    return GenerationService(
        app[keys.REGISTRY], app[keys.PERSONALITIES], store, app[keys.CONFIG].request_timeout_s
    )


async def _bindings_context(app: web.Application) -> AsyncIterator[None]:
    registry = app[keys.REGISTRY]
    bindings: list[Binding] = list(registry)
    results = await asyncio.gather(*(b.startup() for b in bindings), return_exceptions=True)
    for binding, result in zip(bindings, results, strict=True):
        if isinstance(result, BaseException):
            # a backend that is down at start must not keep the server down; health shows it
            log.error("binding %s failed to start: %r", binding.instance_name, result)
    app[keys.PLUGINS].collect("startup", app=app)
    yield
    await asyncio.gather(
        *(asyncio.wait_for(b.shutdown(), SHUTDOWN_TIMEOUT_S) for b in bindings),
        return_exceptions=True,
    )
