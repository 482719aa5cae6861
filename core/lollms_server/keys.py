"""Every aiohttp AppKey of the application, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .config import Config
    from .functions import FunctionRegistry
    from .generation import GenerationService
    from .personalities import PersonalityStore
    from .plugins import Plugins
    from .registry import Registry
    from .store import Store

CONFIG: web.AppKey[Config] = web.AppKey("config")
PLUGINS: web.AppKey[Plugins] = web.AppKey("plugins")
REGISTRY: web.AppKey[Registry] = web.AppKey("registry")
PERSONALITIES: web.AppKey[PersonalityStore] = web.AppKey("personalities")
FUNCTIONS: web.AppKey[FunctionRegistry] = web.AppKey("functions")
GENERATION: web.AppKey[GenerationService] = web.AppKey("generation")
STORE: web.AppKey[Store] = web.AppKey("store")
STARTED_AT: web.AppKey[float] = web.AppKey("started_at")
