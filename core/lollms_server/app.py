"""The application factory: config + plugins -> a ready aiohttp Application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable

from aiohttp import web

from . import health, keys
from .bindings import Binding
from .circuit import STATE_VALUES, Breakers
from .config import Config, prepare_data_dir
from .drain import Drain
from .faces.lollms import admin, client_compat, listing, node_status, webui_compat
from .faces.lollms import generate as lollms
from .faces.ollama import chat as ollama
from .faces.openai import chat as openai
from .httpkit import observe, openapi
from .httpkit.body import continue_later
from .httpkit.error_middleware import error_middleware
from .httpkit.observe import add_trace_headers, observe_middleware
from .httpkit.write_stall import watch_whole_answer
from .ignored_fields import add_ignored_header
from .library import call_observer, load_functions, load_personalities
from .loop_lag import lag_context
from .metrics import Metrics
from .metrics_ops import export_operations
from .offloop import track_default_executor
from .plugins import Plugins, load_plugins
from .registry import build_registry
from .resources.lifecycle import Lifecycle
from .resources.monitor import HealthMonitor
from .resources.placement import Memory
from .resources.scheduler import Scheduler
from .security.api_keys import KeyStore
from .security.audit import AuditLog
from .security.auth import (
    SecuritySettings,
    add_security_headers,
    auth_middleware,
    undeclared_routes,
)
from .security.limits_storage import limits_uri
from .security.local import parse_networks
from .security.ratelimit import RateLimiter
from .service.generation import GenerationService
from .storage import open_store, schema, sqlite_path
from .tracing import start_tracing
from .web import pages

log = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 10.0


async def prepare_answer(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the headers every answer gets, and a big answer's stall watch (one
    hook calling plain functions: one coroutine per answer, not one per part)."""
    add_security_headers(request, response)
    add_trace_headers(request, response)
    node_status.add_load_headers(request, response)
    add_ignored_header(request, response)
    watch_whole_answer(request, response)


def create_app(config: Config, plugins: Plugins | None = None) -> web.Application:
    """Build the application; raises ConfigError when the config does not fit the plugins."""
    plugins = plugins or load_plugins()
    registry = build_registry(config, plugins)
    prepare_data_dir(config)
    app = web.Application(
        middlewares=[observe_middleware, error_middleware, auth_middleware],
        client_max_size=config.max_body_bytes,
    )
    tracer = app[keys.TRACER] = start_tracing(config.tracing, os.environ)
    if tracer is not None:
        app.on_cleanup.append(lambda _app: asyncio.to_thread(tracer.shutdown))
    app.on_response_prepare.append(prepare_answer)
    metrics = app[keys.METRICS] = Metrics()
    scheduler = app[keys.SCHEDULER] = Scheduler(
        config.resources.queue_size, config.resources.queue_timeout_s
    )
    resources = config.resources
    lifecycle = app[keys.LIFECYCLE] = Lifecycle(
        registry,
        scheduler,
        memory=Memory(
            ram_budget=resources.ram_budget,
            ram_reserve=resources.ram_reserve,
            gpu_budget=resources.gpu_budget,
            gpu_reserve=resources.gpu_reserve,
        ),
        max_loaded=resources.max_loaded_models,
        max_loaded_per_instance=_max_loaded_per_instance(config, registry),
        pinned=frozenset(resources.pinned),
        device_pins=resources.devices,
        keep_alive_s=resources.keep_alive_s,
        timeout_s=config.request_timeout_s,
    )
    metrics.add_gauge(
        "lollms_model_memory_bytes", "Memory of each loaded model", ["instance", "model", "device"],
        lambda: [({"instance": m.instance, "model": m.model, "device": m.device}, m.bytes)
                 for m in lifecycle.loaded.values()],
    )  # fmt: skip
    metrics.add_gauge(
        "lollms_loaded_models", "Models loaded now", [], lambda: [({}, len(lifecycle.loaded))]
    )
    resilience = config.resilience
    breakers = app[keys.BREAKERS] = Breakers(
        resilience.failure_threshold, resilience.window_s, resilience.cooldown_s
    )
    monitor = app[keys.MONITOR] = HealthMonitor(
        registry,
        breakers,
        resilience.health_interval_s,
        restart_limit=resilience.restart_limit,
        restart_window_s=resilience.restart_window_s,
        restart_timeout_s=config.request_timeout_s,
        on_restart=lambda instance, outcome: metrics.restarts.labels(instance, outcome).inc(),
        after_restart=lifecycle.forget_unlisted,
    )
    metrics.add_gauge(
        "lollms_circuit_state", "Circuit per instance: 0 closed, 1 half-open, 2 open", ["instance"],
        lambda: [({"instance": b.instance_name}, STATE_VALUES[breakers.of(b.instance_name)
                  .current_state()]) for b in registry],
    )  # fmt: skip
    metrics.add_gauge(
        "lollms_queue_depth", "Generations waiting for a slot", ["instance", "model"],
        lambda: [({"instance": i, "model": m}, n) for (i, m), n in scheduler.queue_depth().items()],
    )  # fmt: skip
    metrics.add_gauge(
        "lollms_active_generations", "Generations running now", ["instance", "model"],
        lambda: [({"instance": i, "model": m}, lane.active)
                 for (i, m), lane in scheduler.lanes.items()],
    )  # fmt: skip
    export_operations(metrics, registry, monitor, scheduler, lifecycle, sqlite_path(config))
    app[keys.CONFIG] = config
    drain = app[keys.DRAIN] = Drain(config.drain_timeout_s)
    metrics.add_gauge(
        "lollms_draining", "1 while this server drains (SIGTERM)", [],
        lambda: [({}, float(drain.draining))],
    )  # fmt: skip
    app[keys.SECURITY] = SecuritySettings(
        local_access=config.security.local_access,
        trusted_proxies=parse_networks(config.security.trusted_proxies),
        cors_origins=frozenset(config.security.cors_origins),
    )
    app[keys.LIMITER] = RateLimiter(
        limits_uri(config.security),
        ip_rpm=config.security.ip_rpm,
        key_rpm=config.security.key_rpm,
        key_tpm=config.security.key_tpm,
        key_concurrent=config.security.key_concurrent,
        window_s=config.security.rate_limit_window_s,
        on_reject=metrics.rate_limited.inc,
        on_storage_error=config.security.rate_limit_on_storage_error,
        on_storage_failure=metrics.rate_limit_storage_errors.inc,
    )
    app[keys.PLUGINS] = plugins
    app[keys.REGISTRY] = registry
    app[keys.PERSONALITIES] = load_personalities(config, plugins)
    app[keys.FUNCTIONS] = load_functions(config, plugins)
    app[keys.STARTED_AT] = time.time()
    app.router.add_routes(lollms.routes)
    app.router.add_routes(listing.routes)
    app.router.add_routes(admin.routes)
    app.router.add_routes(openai.routes)
    app.router.add_routes(ollama.routes)
    app.router.add_routes(client_compat.routes)
    app.router.add_routes(webui_compat.routes)
    app.router.add_routes(openapi.routes)
    app.router.add_routes(observe.routes)
    app.router.add_routes(node_status.routes)
    pages.setup(app, config.data_dir / "templates")
    for route in app.router.routes():  # aiohttp takes the handler per route only
        route._expect_handler = continue_later
    undeclared = undeclared_routes(app)
    if undeclared:  # a core route must say who may call it; refusing to start beats guessing
        raise RuntimeError(f"routes without a declared access level: {', '.join(undeclared)}")
    _mount_plugin_routes(app, plugins)
    app.cleanup_ctx.append(_store_context)
    app.cleanup_ctx.append(_bindings_context)
    app.cleanup_ctx.append(lag_context)  # from when requests may come: start-up work is no lag
    return app


def _max_loaded_per_instance(config: Config, registry: Iterable[Binding]) -> dict[str, int]:
    """`[bindings.<name>] max_loaded_models`, lowered to a binding's own limit (lollms-diffusers'
    `max_loaded`): the server unloads past it, so a model the binding would drop on its own
    never stays in the books."""
    limits = {n: s.max_loaded_models for n, s in config.bindings.items() if s.max_loaded_models}
    for binding in registry:
        own = binding.max_loaded()
        if own:
            name = binding.instance_name
            limits[name] = min(own, limits.get(name, own))
    return limits


def _mount_plugin_routes(app: web.Application, plugins: Plugins) -> None:
    for plugin_name, route_defs in plugins.collect("register_routes"):
        sub = web.Application()
        sub.router.add_routes(route_defs)
        app.add_subapp(f"/-/{plugin_name}/", sub)
        for route in undeclared_routes(sub):
            log.warning(
                "plugin %s: %s declares no access level (`requires(...)`); it is refused",
                plugin_name, route,
            )  # fmt: skip


async def _store_context(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    store = await open_store(config)
    try:
        await schema.prepare(store, config.storage.migrate_on_start)
    except BaseException:
        await store.close()
        raise
    audit = AuditLog(
        store,
        config.security.audit_retention_days,
        config.security.audit_prompts,
        on_write_failure=app[keys.METRICS].audit_write_failures.inc,
        failure_interval_s=config.security.audit_failure_interval_s,
    )
    await audit.purge()
    app[keys.STORE] = store
    app[keys.KEYSTORE] = KeyStore(store)
    app[keys.AUDIT] = audit
    app[keys.GENERATION] = GenerationService(
        app[keys.REGISTRY],
        app[keys.PERSONALITIES],
        config.request_timeout_s,
        audit=audit,
        limiter=app[keys.LIMITER],
        metrics=app[keys.METRICS],
        scheduler=app[keys.SCHEDULER],
        breakers=app[keys.BREAKERS],
        lifecycle=app[keys.LIFECYCLE],
        first_token_timeout_s=config.resources.first_token_timeout_s,
        functions=app[keys.FUNCTIONS],
        drain=app[keys.DRAIN],
    )
    app[keys.FUNCTIONS].on_call = call_observer(app)
    upkeep = asyncio.create_task(store.maintain())
    failure_counts = asyncio.create_task(audit.failures.run())
    yield
    for task in (failure_counts, upkeep):  # the last counts go in before the checkpoint
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await store.close()


async def _bindings_context(app: web.Application) -> AsyncIterator[None]:
    registry = app[keys.REGISTRY]
    bindings: list[Binding] = list(registry)
    track_default_executor()  # a cancelled generation's slot waits for its to_thread work
    limit = app[keys.CONFIG].request_timeout_s  # a startup that hangs must not keep us down
    results = await asyncio.gather(
        *(asyncio.wait_for(b.startup(), limit) for b in bindings), return_exceptions=True
    )
    for binding, result in zip(bindings, results, strict=True):
        # a backend that is down at start must not keep the server down; health shows it
        if isinstance(result, TimeoutError):
            log.error("binding %s did not start within %ss", binding.instance_name, limit)
            health.startup_failed(binding, f"it did not start within {limit}s")
        elif isinstance(result, BaseException):
            log.error("binding %s failed to start: %r", binding.instance_name, result)
            health.startup_failed(binding, repr(result))
    app[keys.PLUGINS].collect("startup", app=app)
    for binding in bindings:  # the models that may be metric labels, listed in the background
        app[keys.METRICS].models.refresh_soon(binding)
    monitor = app[keys.MONITOR]
    tasks = [asyncio.create_task(app[keys.LIFECYCLE].run())]
    if monitor.interval_s > 0:
        tasks.append(asyncio.create_task(monitor.run()))
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(
        *(asyncio.wait_for(b.shutdown(), SHUTDOWN_TIMEOUT_S) for b in bindings),
        return_exceptions=True,
    )
