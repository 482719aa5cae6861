"""The sections of lollms.toml besides server and bindings: schemas and validated values."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from .resources.placement import DEVICE_PIN, is_gpu_sizes, is_size
from .whole_number import Whole

T = TypeVar("T")
DEVICE = validate.Regexp(DEVICE_PIN, error="a device is cpu, gpu or cuda:<n>")


def _check(test: Callable[[Any], bool], message: str, value: Any) -> None:
    if not test(value):
        raise ValidationError(message)


SIZE = partial(_check, is_size, "allowed: bytes, '8GiB' or '75%'")
GPU_SIZES = partial(_check, is_gpu_sizes, "allowed: a size, or a table of sizes per 'cuda:<n>'")


def _network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValidationError(f"not an IP address or CIDR range: {exc}") from exc
    return True


def _limits_storage(value: str) -> bool:
    from limits.errors import ConfigurationError

    from .masking import mask_text
    from .security.limits_storage import open_storage

    try:
        open_storage(value)  # builds the client only: nothing is contacted here
    except (ConfigurationError, ValueError) as exc:
        reason = mask_text(str(exc))
        raise ValidationError(f"not a usable async `limits` storage: {reason}") from exc
    return True


class SecuritySchema(Schema):
    """`[security]`: local access, proxies, CORS, rate limits, audit log."""

    class Meta:
        unknown = RAISE

    local_access = fields.Boolean(load_default=True)
    trusted_proxies = fields.List(fields.String(validate=_network), load_default=list)
    cors_origins = fields.List(fields.String(), load_default=list)
    ip_rpm = Whole(load_default=0, validate=validate.Range(min=0))
    key_rpm = Whole(load_default=0, validate=validate.Range(min=0))
    key_tpm = Whole(load_default=0, validate=validate.Range(min=0))
    key_concurrent = Whole(load_default=0, validate=validate.Range(min=0))
    rate_limit_storage = fields.String(load_default="async+memory://", validate=_limits_storage)
    rate_limit_storage_env = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]*$")
    )
    rate_limit_window_s = Whole(load_default=60, validate=validate.Range(1, 86400))
    rate_limit_on_storage_error = fields.String(
        load_default="allow", validate=validate.OneOf(("allow", "refuse"))
    )
    audit_retention_days = fields.Float(load_default=90.0, validate=validate.Range(min=0.001))
    audit_prompts = fields.Boolean(load_default=False)
    audit_failure_interval_s = fields.Float(load_default=60.0, validate=validate.Range(1, 86400))


class ResourcesSchema(Schema):
    """`[resources]`: the generation queue, memory budgets per device, device pins."""

    class Meta:
        unknown = RAISE

    queue_size = Whole(load_default=64, validate=validate.Range(0, 1_000_000))
    ram_budget = fields.Raw(load_default=None, validate=SIZE)
    ram_reserve = fields.Raw(load_default=0, validate=SIZE)
    gpu_budget = fields.Raw(load_default=None, validate=GPU_SIZES)
    gpu_reserve = fields.Raw(load_default="512MiB", validate=GPU_SIZES)
    devices = fields.Dict(values=fields.String(validate=DEVICE), load_default=dict)
    max_loaded_models = Whole(load_default=0, validate=validate.Range(0, 100_000))
    keep_alive_s = fields.Float(load_default=300.0, validate=validate.Range(min=-1))
    pinned = fields.List(fields.String(), load_default=list)
    queue_timeout_s = fields.Float(load_default=300.0, validate=validate.Range(min=0.01))
    first_token_timeout_s = fields.Float(load_default=0.0, validate=validate.Range(min=0))


class ResilienceSchema(Schema):
    """`[resilience]`: circuit breakers and the health monitor."""

    class Meta:
        unknown = RAISE

    failure_threshold = Whole(load_default=5, validate=validate.Range(1, 10_000))
    window_s = fields.Float(load_default=30.0, validate=validate.Range(min=0.01))
    cooldown_s = fields.Float(load_default=30.0, validate=validate.Range(min=0.01))
    health_interval_s = fields.Float(load_default=30.0, validate=validate.Range(min=0))
    restart_limit = Whole(load_default=5, validate=validate.Range(0, 10_000))
    restart_window_s = fields.Float(load_default=600.0, validate=validate.Range(min=1))


class RouteField(fields.Field[dict[str, Any]]):
    """A route: a list of `<instance>/<model>` targets, or {targets = [...], strategy = ...}."""

    STRATEGIES = ("ordered", "least-busy", "most-room")

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, Any]:
        if isinstance(value, list):
            value = {"targets": value}
        if isinstance(value, dict) and value.get("fleet") is True:
            return self._fleet_route(value)
        if not isinstance(value, dict) or set(value) - {"targets", "strategy"}:
            raise ValidationError(
                "a list of targets, a table with `targets` and `strategy`, or {fleet = true}"
            )
        targets = value.get("targets")
        if not (isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets)):
            raise ValidationError("`targets` is a non-empty list of '<instance>/<model>' strings")
        strategy = value.get("strategy", "ordered")
        if strategy not in self.STRATEGIES:
            raise ValidationError(f"strategy must be one of: {', '.join(self.STRATEGIES)}")
        return {"targets": list(targets), "strategy": strategy}

    def _fleet_route(self, value: dict[str, Any]) -> dict[str, Any]:
        """`{fleet = true, model?, strategy?}`: every fleet node listing the model."""
        if set(value) - {"fleet", "model", "strategy"}:
            raise ValidationError("a fleet route takes `fleet`, `model` and `strategy` only")
        model = value.get("model")
        if model is not None and not (isinstance(model, str) and model):
            raise ValidationError("`model` is the model's name on the nodes")
        strategy = value.get("strategy", "least-busy")
        if strategy not in self.STRATEGIES:
            raise ValidationError(f"strategy must be one of: {', '.join(self.STRATEGIES)}")
        return {"targets": [], "strategy": strategy, "fleet": True, "model": model}


class FleetSchema(Schema):
    """`[fleet]`: lollms-server nodes this server fronts (one `lollms` instance each)."""

    class Meta:
        unknown = RAISE

    nodes = fields.List(fields.Url(schemes={"http", "https"}, require_tld=False), load_default=list)
    api_key = fields.String(load_default=None, allow_none=True)
    api_key_env = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]*$")
    )


class TracingSchema(Schema):
    """`[tracing]`: OpenTelemetry spans exported over OTLP/HTTP (off by default)."""

    class Meta:
        unknown = RAISE

    enabled = fields.Boolean(load_default=False)
    endpoint = fields.Url(
        schemes={"http", "https"}, require_tld=False, load_default="http://127.0.0.1:4318/v1/traces"
    )
    headers_env = fields.String(
        load_default="OTEL_EXPORTER_OTLP_HEADERS",
        allow_none=True,
        validate=validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]*$"),
    )
    sample_ratio = fields.Float(load_default=1.0, validate=validate.Range(0.0, 1.0))
    service_name = fields.String(load_default="lollms-server", validate=validate.Length(1, 200))
    export_timeout_s = fields.Float(load_default=10.0, validate=validate.Range(min=0.1, max=600))


class StorageSchema(Schema):
    """`[storage]`: where keys and the audit log live (SQLite in the data dir by default)."""

    class Meta:
        unknown = RAISE

    url = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(
            r"^(sqlite:///|postgres(ql)?://)", error="a sqlite:/// or postgresql:// URL"
        ),
    )
    url_env = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]*$")
    )
    pool_size = Whole(load_default=10, validate=validate.Range(1, 1000))
    connect_timeout_s = fields.Float(load_default=10.0, validate=validate.Range(min=0.1))
    statement_timeout_s = fields.Float(load_default=5.0, validate=validate.Range(min=0.1))
    migrate_on_start = fields.Boolean(load_default=True)


class PersonalitiesSchema(Schema):
    """`[personalities]`: extra folders to read personalities from."""

    class Meta:
        unknown = RAISE

    folders = fields.List(fields.String(), load_default=list)
    examples = fields.Boolean(load_default=True)


FUNCTION_TIMEOUT_S = 30.0  # `[functions]` defaults a registry made outside a config uses too
FUNCTION_RESULT_CHARS = 65536


class FunctionsSchema(Schema):
    """`[functions]`: folders of function files, unsafe ones allowed, the calling loop's limits."""

    class Meta:
        unknown = RAISE

    folders = fields.List(fields.String(), load_default=list)
    allow_unsafe = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)
    max_steps = Whole(load_default=5, validate=validate.Range(1, 100))
    timeout_s = fields.Float(load_default=FUNCTION_TIMEOUT_S, validate=validate.Range(min=0.01))
    max_result_chars = Whole(load_default=FUNCTION_RESULT_CHARS, validate=validate.Range(min=1))


def defaults_from(schema: type[Schema]) -> Callable[[type[T]], type[T]]:
    """Class decorator under `@dataclass`: each annotated field's default is `schema`'s
    `load_default` (a factory for lists and dicts), so that a setting's default is written once."""

    def apply(cls: type[T]) -> type[T]:
        declared = schema._declared_fields
        for name in cls.__annotations__:
            default = declared[name].load_default
            if callable(default):
                setattr(cls, name, field(default_factory=default))
            elif isinstance(default, list | dict):
                setattr(cls, name, field(default_factory=partial(copy.copy, default)))
            else:
                setattr(cls, name, default)
        return cls

    return apply


def schema_default(cls: type[T]) -> Callable[[], T]:
    """A `defaults_from` dataclass as a default factory (every field has its schema default)."""
    factory: Callable[[], T] = cls
    return factory


@dataclass
@defaults_from(SecuritySchema)
class SecurityConfig:
    """`[security]`; see SecuritySchema for meanings (0 means no limit)."""

    local_access: bool
    trusted_proxies: list[str]
    cors_origins: list[str]
    ip_rpm: int
    key_rpm: int
    key_tpm: int
    key_concurrent: int
    rate_limit_storage: str
    rate_limit_storage_env: str | None
    rate_limit_window_s: int
    rate_limit_on_storage_error: Literal["allow", "refuse"]
    audit_retention_days: float
    audit_prompts: bool
    audit_failure_interval_s: float


@dataclass
@defaults_from(StorageSchema)
class StorageConfig:
    """`[storage]`: see StorageSchema; neither url nor url_env means the SQLite file."""

    url: str | None
    url_env: str | None
    pool_size: int
    connect_timeout_s: float
    statement_timeout_s: float
    migrate_on_start: bool


@dataclass
@defaults_from(ResourcesSchema)
class ResourcesConfig:
    """`[resources]`: queue limits, model lifecycle, memory budgets and device pins."""

    queue_size: int
    ram_budget: str | float | None
    ram_reserve: str | float
    gpu_budget: str | float | dict[str, str | float] | None
    gpu_reserve: str | float | dict[str, str | float]
    devices: dict[str, str]
    max_loaded_models: int
    keep_alive_s: float
    pinned: list[str]
    queue_timeout_s: float
    first_token_timeout_s: float


@dataclass
@defaults_from(ResilienceSchema)
class ResilienceConfig:
    """`[resilience]`: breakers, the health monitor interval (0 = off) and restart limits."""

    failure_threshold: int
    window_s: float
    cooldown_s: float
    health_interval_s: float
    restart_limit: int
    restart_window_s: float


@dataclass
@defaults_from(TracingSchema)
class TracingConfig:
    """`[tracing]`: see TracingSchema; the exporter's headers come from `headers_env`."""

    enabled: bool
    endpoint: str
    headers_env: str | None
    sample_ratio: float
    service_name: str
    export_timeout_s: float


@dataclass
@defaults_from(FunctionsSchema)
class FunctionsConfig:
    """`[functions]`: see FunctionsSchema."""

    folders: list[Path]
    allow_unsafe: list[str]
    max_steps: int
    timeout_s: float
    max_result_chars: int
