"""Every aiohttp AppKey of the application, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .circuit import Breakers
    from .config import Config
    from .drain import Drain
    from .httpkit.error_middleware import ErrorRenderer
    from .metrics import Metrics
    from .plugins import Plugins
    from .registry import Registry
    from .resources.lifecycle import Lifecycle
    from .resources.monitor import HealthMonitor
    from .resources.scheduler import Scheduler
    from .security.api_keys import KeyStore
    from .security.audit import AuditLog
    from .security.auth import SecuritySettings
    from .security.principal import Principal
    from .security.ratelimit import RateLimiter
    from .service.functions import FunctionRegistry
    from .service.generation import GenerationService
    from .service.personalities import PersonalityStore
    from .storage import Store
    from .tracing_types import Tracer
    from .web.streams import StreamRegistry

CONFIG: web.AppKey[Config] = web.AppKey("config")
PLUGINS: web.AppKey[Plugins] = web.AppKey("plugins")
REGISTRY: web.AppKey[Registry] = web.AppKey("registry")
PERSONALITIES: web.AppKey[PersonalityStore] = web.AppKey("personalities")
FUNCTIONS: web.AppKey[FunctionRegistry] = web.AppKey("functions")
GENERATION: web.AppKey[GenerationService] = web.AppKey("generation")
STORE: web.AppKey[Store] = web.AppKey("store")
STARTED_AT: web.AppKey[float] = web.AppKey("started_at")
SECURITY: web.AppKey[SecuritySettings] = web.AppKey("security")
KEYSTORE: web.AppKey[KeyStore] = web.AppKey("keystore")
AUDIT: web.AppKey[AuditLog] = web.AppKey("audit")
LIMITER: web.AppKey[RateLimiter] = web.AppKey("limiter")
WEB_STREAMS: web.AppKey[StreamRegistry] = web.AppKey("web_streams")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
SCHEDULER: web.AppKey[Scheduler] = web.AppKey("scheduler")
BREAKERS: web.AppKey[Breakers] = web.AppKey("breakers")
MONITOR: web.AppKey[HealthMonitor] = web.AppKey("monitor")
LIFECYCLE: web.AppKey[Lifecycle] = web.AppKey("lifecycle")
DRAIN: web.AppKey[Drain] = web.AppKey("drain")
TRACER: web.AppKey[Tracer | None] = web.AppKey("tracer")
# the error shapes registered for paths other than the APIs' (the pages' HTML error page)
ERROR_RENDERERS: web.AppKey[tuple[ErrorRenderer, ...]] = web.AppKey("error_renderers")
# who is calling: set by the auth middleware, read by the request log and the handlers
REQUEST_PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("lollms_principal")
