"""Binding instances built from the config, and the lookups that resolve requests to them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import RAISE, ValidationError

from .binding_context import BindingContext
from .bindings import GENERATION_TYPES, Binding
from .config import Config, InstanceConfig, describe_errors
from .errors import (
    ConfigError,
    Forbidden,
    InvalidRequest,
    LollmsError,
    ModelNotFound,
    NotFound,
    NotSupported,
)
from .fleet import FLEET_TYPE
from .guard import guarded
from .health import HEALTH_TIMEOUT_S
from .plugins import SHIPPED_PLUGINS, Plugins
from .resilience import FALLBACK_REMAINS
from .security.principal import caller, current


@dataclass(frozen=True)
class Target:
    """A resolved request target: which instance, which model."""

    binding: Binding
    model: str
    fallbacks: tuple[Target, ...] = ()
    route: str | None = None
    strategy: str = "ordered"
    by_default: bool = False  # the request named a model but no instance: the default one
    chosen_by: str | None = None  # the config key that chose the model when the request did not

    def unknown_model(self, exc: ModelNotFound) -> ModelNotFound:
        """`exc`, saying where the model's name came from: the config, or a bare name sent
        to the default instance (and how to reach another instance's)."""
        if self.chosen_by is not None:
            hint = (
                f"; the request named no model, so {self.model!r} comes from {self.chosen_by} "
                "in the config: correct it there, or name a model"
            )
        elif self.by_default:
            hint = (
                f"; a model named without its instance goes to the default instance "
                f"{self.binding.instance_name!r}: name another instance's as "
                "`<instance>/<model>` (GET /v1/models lists them)"
            )
        else:
            return exc
        return ModelNotFound(exc.message + hint, binding=exc.binding, param=exc.param)

    @property
    def ref(self) -> str:
        """`<instance>/<model>`."""
        return f"{self.binding.instance_name}/{self.model}"

    @property
    def default_max_tokens(self) -> int:
        """The `max_tokens` of a text request that sets none: the instance's
        `default_max_tokens`, never past the model's context where the binding knows it."""
        cap = self.binding.default_max_tokens
        context = self.binding.context_length(self.model)
        return min(cap, context) if context else cap

    def require(self, capability: str, doing: str, param: str) -> None:
        """A 501 naming what was asked (`doing`) unless the binding has `capability`."""
        require(self.binding, capability, f"{self.ref} cannot {doing}", param)


def require(binding: Binding, capability: str, what: str, param: str | None = None) -> None:
    """The one capability check: 501 NotSupported (`what` the caller asked, and what the
    binding lacks) unless `binding` has `capability`; malformed requests stay 400."""
    if capability in binding.capabilities:
        return
    if capability in GENERATION_TYPES:
        can = ", ".join(sorted(set(binding.capabilities) & set(GENERATION_TYPES)))
        lacks = f"it does: {can or 'nothing'}"
    else:
        lacks = f"binding type {binding.name} has no {capability} capability"
    raise NotSupported(f"{what} ({lacks})", binding=binding.instance_name, param=param)


class Registry:
    """Configured binding instances by name, plus default routing per generation type."""

    def __init__(self, instances: dict[str, Binding], defaults: dict[str, str]) -> None:
        self.instances = instances
        self.defaults = defaults
        self.default_models: dict[str, str | None] = {}
        self.concurrency: dict[str, int] = {}
        self.routes: dict[str, dict[str, Any]] = {}

    def max_concurrency(self, target: Target) -> int:
        """The configured `max_concurrent` of the instance, else what the binding says."""
        configured = self.concurrency.get(target.binding.instance_name)
        return configured or target.binding.max_concurrency(target.model)

    def __iter__(self) -> Iterator[Binding]:
        return iter(self.instances.values())

    def get(self, name: str) -> Binding:
        """The instance called `name`, or NotFound listing the ones that exist."""
        try:
            return self.instances[name]
        except KeyError:
            principal = current()  # a caller is told of the instances it may use only
            visible = [
                n for n in self.instances if principal is None or principal.may_use_instance(n)
            ]
            known = ", ".join(sorted(visible)) or "none configured"
            raise NotFound(
                f"no binding instance named {name!r}; instances: {known}", param="binding_name"
            ) from None

    def default_ref(self, generation_type: str) -> str:
        """The configured default `<instance>[/<model>]` for a generation type."""
        ref = self.defaults.get(generation_type)
        if not ref:
            raise InvalidRequest(
                f"no binding given and no default configured for {generation_type!r}; "
                f"set [defaults] {generation_type} in the config",
                param="binding_name",
            )
        return ref

    def split_ref(self, ref: str) -> tuple[str, str | None]:
        """Split `<instance>/<model>`; a first part that is no instance means a bare model."""
        head, sep, tail = ref.partition("/")
        if head in self.instances:
            return head, (tail or None) if sep else None
        raise _BareModel(ref)

    async def resolve(
        self, generation_type: str, instance: str | None, model: str | None
    ) -> Target:
        """Find the instance and model for a request, applying defaults and capabilities."""
        if generation_type not in GENERATION_TYPES:
            raise InvalidRequest(f"unknown generation_type {generation_type!r}")
        if instance is None and model in self.routes:
            return await self._resolve_route(generation_type, model)
        if instance is None and model is None and self.defaults.get(generation_type) in self.routes:
            return await self._resolve_route(generation_type, self.defaults[generation_type])
        principal = caller()  # no known caller: refused (fail closed)
        named = (instance, model)  # what the request named: all a refusal may repeat
        chosen_by = None  # the config key that names the model when the request names none
        if instance is None and model is not None and not self.defaults.get(generation_type):
            raise ModelNotFound(
                f"unknown model {model!r}: no route has that name and it names no instance of "
                "this server; name it `<instance>/<model>` (GET /v1/models lists them)",
                param="model",
            )
        if instance is None:
            default_instance, default_model = self.split_ref(self.default_ref(generation_type))
            if model is None and default_model is not None:
                chosen_by = f"[defaults] {generation_type}"
            instance, model = default_instance, model or default_model
        if not principal.may_use_instance(instance):  # before 404 and 501: nothing is told
            raise refusal(named, generation_type)
        binding = self.get(instance)
        what = f"binding instance {instance!r} (type {binding.name}) cannot do {generation_type!r}"
        require(binding, generation_type, what)
        if model is None and self.default_models.get(instance):
            chosen_by = f"[bindings.{instance}] default_model"
        model = (
            model
            or self.default_models.get(instance)
            or await _default_model(binding, generation_type)
        )
        if not principal.may_use(instance, model):
            raise refusal(named, generation_type)
        bare = named[0] is None and named[1] is not None
        return Target(binding, model, by_default=bare, chosen_by=chosen_by)

    async def _resolve_route(self, generation_type: str, name: str) -> Target:
        """The route's targets in order: the first, with the others as its fallbacks."""
        route = self.routes[name]
        targets = []
        try:
            if route.get("fleet"):
                targets = await fleet_targets(self, generation_type, name, route)
            for ref in route["targets"]:
                instance, _, model = ref.partition("/")
                targets.append(await self.resolve(generation_type, instance, model or None))
        except Forbidden:  # the targets are not the caller's to know: name only the route
            raise refusal((None, name), generation_type) from None
        first, *rest = targets
        return Target(first.binding, first.model, tuple(rest), name, route["strategy"])

    async def resolve_ref(self, generation_type: str, ref: str | None) -> Target:
        """Resolve an OpenAI-style model id: `<instance>/<model>`, `<instance>` or a bare model."""
        if not ref:
            return await self.resolve(generation_type, None, None)
        try:
            instance, model = self.split_ref(ref)
        except _BareModel:
            return await self.resolve(generation_type, None, ref)
        principal = current()
        if principal is not None and not principal.may_use_instance(instance):
            # to this key the instance does not exist: the ref is a bare model name, as with
            # an instance name that no instance has (a 403 naming it would confirm it exists)
            return await self.resolve(generation_type, None, ref)
        return await self.resolve(generation_type, instance, model)


def refusal(named: tuple[str | None, str | None], generation_type: str) -> Forbidden:
    """403 for a target the key may not use, naming only what the request named: a key is
    not told the defaults, models or instances it cannot use."""
    instance, model = named
    if instance is None and model is None:
        return Forbidden(
            f"this key may not use the default {generation_type!r} target: name a model it "
            "may use (GET /v1/models lists them for this key)"
        )
    if model is None:
        return Forbidden(f"this key may not use binding instance {instance!r}")
    where = f" of instance {instance!r}" if instance is not None else ""
    return Forbidden(f"this key may not use model {model!r}{where}")


class _BareModel(Exception):
    """Internal: the reference names no instance."""


async def _default_model(binding: Binding, generation_type: str) -> str:
    # it lists the models, bounded like every listing: a failure is the binding's 502/504
    model = await guarded(binding, binding.default_model(generation_type), HEALTH_TIMEOUT_S)
    if not model:
        raise ModelNotFound(
            f"binding instance {binding.instance_name!r} has no models",
            binding=binding.instance_name,
        )
    return model


def build_registry(config: Config, plugins: Plugins) -> Registry:
    """Instantiate every enabled configured instance; raise ConfigError on any bad setting."""
    instances: dict[str, Binding] = {}
    context = BindingContext(data_dir=config.data_dir)
    for name, spec in config.bindings.items():
        if spec.enabled:
            instances[name] = _instantiate(spec, plugins, context, str(config.path or "config"))
    _check_references(config, set(instances))
    registry = Registry(instances, dict(config.defaults))
    registry.default_models = {n: s.default_model for n, s in config.bindings.items()}
    registry.concurrency = {
        n: s.max_concurrent for n, s in config.bindings.items() if s.max_concurrent
    }
    registry.routes = dict(config.routes)
    return registry


def check_config(config: Config, plugins: Plugins) -> None:
    """Raise the ConfigError that build_registry would, without building any instance."""
    enabled = {name for name, spec in config.bindings.items() if spec.enabled}
    for name in sorted(enabled):
        _binding_settings(config.bindings[name], plugins, str(config.path or "config"))
    _check_references(config, enabled)


def _check_references(config: Config, instances: set[str]) -> None:
    """Every route target and default names an enabled instance."""
    for name, route in config.routes.items():
        for ref in route["targets"]:
            if ref.partition("/")[0] not in instances:
                raise ConfigError(
                    f"routes.{name}: target {ref!r} names no enabled instance "
                    f"({', '.join(sorted(instances)) or 'none configured'})"
                )
    for generation_type, ref in config.defaults.items():
        instance = ref.partition("/")[0]
        if ref in config.routes:
            continue
        if instance not in instances:
            raise ConfigError(
                f"defaults.{generation_type}: got {ref!r}; allowed: an enabled instance "
                f"({', '.join(sorted(instances)) or 'none configured'})"
            )


def _instantiate(
    spec: InstanceConfig, plugins: Plugins, context: BindingContext, source: str
) -> Binding:
    cls, settings = _binding_settings(spec, plugins, source)
    try:
        binding = cls(spec.name, settings, context=context)
    except Exception as exc:  # third-party code: name the instance, not a traceback
        info = plugins.plugin_of(spec.type)
        owner = f" (plugin {info.name!r})" if info else ""
        raise ConfigError(
            f"bindings.{spec.name}: the {spec.type!r} binding{owner} failed to build: {exc!r}"
        ) from exc
    if spec.default_max_tokens is not None:
        binding.default_max_tokens = spec.default_max_tokens
    return binding


def _binding_settings(
    spec: InstanceConfig, plugins: Plugins, source: str
) -> tuple[type[Binding], Any]:
    """The instance's binding class and its settings as that class loads them."""
    cls = plugins.binding_classes.get(spec.type)
    if cls is None:
        allowed = ", ".join(sorted(plugins.binding_classes)) or "none installed"
        hint = ""
        if spec.type in SHIPPED_PLUGINS:  # the usual slip: the core without the type's plugin
            plugin = SHIPPED_PLUGINS[spec.type]
            hint = f"; {spec.type!r} comes with the plugin {plugin}: pip install ./plugins/{plugin}"
        if plugins.errors:
            hint += "; plugins that failed to load: " + ", ".join(sorted(plugins.errors))
        raise ConfigError(f"bindings.{spec.name}.type: got {spec.type!r}; allowed: {allowed}{hint}")
    try:
        return cls, cls.ConfigSchema().load(spec.settings, unknown=RAISE)
    except ValidationError as exc:
        raise ConfigError(
            describe_errors(exc.messages, spec.settings, source).replace(
                "\n  ", f"\n  bindings.{spec.name}."
            )
        ) from exc
    except Exception as exc:  # third-party schema code: name the instance, not a traceback
        info = plugins.plugin_of(spec.type)
        owner = f" (plugin {info.name!r})" if info else ""
        raise ConfigError(
            f"bindings.{spec.name}: the {spec.type!r} binding{owner} cannot load its settings: "
            f"{exc!r}"
        ) from exc


async def fleet_targets(
    registry: Registry, generation_type: str, name: str, route: Mapping[str, Any]
) -> list[Target]:
    """Every `lollms` instance whose node lists the route's model (a node that cannot be
    asked, or that the caller may not use it on, is left out: at once, without the retry
    backoff); ModelNotFound when none does, Forbidden when the caller may use it on none."""
    model = route.get("model") or name
    targets: list[Target] = []
    principal, forbidden = caller(), False
    for binding in registry.instances.values():
        has_model = getattr(binding, "has_model", None)
        if binding.name != FLEET_TYPE or has_model is None:
            continue
        if not principal.may_use(binding.instance_name, model):
            forbidden = True
            continue
        # a node left out, others serve: its refused connection or Retry-After is not waited on
        fallback = FALLBACK_REMAINS.set(True)
        try:
            if not await has_model(model):
                continue
        except LollmsError:
            continue
        finally:
            FALLBACK_REMAINS.reset(fallback)
        targets.append(await registry.resolve(generation_type, binding.instance_name, model))
    if not targets and forbidden:
        raise Forbidden(f"this key may not use model {name!r}")
    if not targets:
        raise ModelNotFound(f"route {name!r}: no fleet node has model {model!r}", param="model")
    return targets
