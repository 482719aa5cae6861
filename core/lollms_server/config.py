"""The configuration file (lollms.toml): schema, env overrides, first-run defaults."""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from .binding_context import default_data_dir
from .bindings import GENERATION_TYPES
from .config_default import DEFAULT_CONFIG_TEXT, DEFAULT_HOST, DEFAULT_PORT
from .config_sections import (
    FleetSchema,
    FunctionsConfig,
    FunctionsSchema,
    PersonalitiesSchema,
    ResilienceConfig,
    ResilienceSchema,
    ResourcesConfig,
    ResourcesSchema,
    RouteField,
    SecurityConfig,
    SecuritySchema,
    StorageConfig,
    StorageSchema,
    TracingConfig,
    TracingSchema,
    schema_default,
)
from .errors import ConfigError
from .fleet import FLEET_TYPE, fleet_instances
from .logs import LOG_FORMATS
from .masking import mask_text
from .request_limits import RequestLimits
from .whole_number import Whole

CONFIG_FILE_NAME = "lollms.toml"
NAME_OF_ROUTE = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$", error="route names use letters, digits, '_-.:'"
)
INSTANCE_NAME = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    error="instance names use letters, digits, '_', '-', '.' (max 64, no '/')",
)


class ServerSchema(Schema):
    """`[server]`: where to listen and the request limits."""

    class Meta:
        unknown = RAISE

    host = fields.String(load_default=DEFAULT_HOST)
    port = Whole(load_default=DEFAULT_PORT, validate=validate.Range(0, 65535))
    data_dir = fields.String(load_default=None, allow_none=True)
    max_body_mb = fields.Float(load_default=64.0, validate=validate.Range(min=0.001, max=4096))
    max_text_body_mb = fields.Float(load_default=8.0, validate=validate.Range(min=0.001, max=4096))
    body_timeout_s = fields.Float(load_default=60.0, validate=validate.Range(min=0.1, max=86400))
    max_json_values = Whole(load_default=300_000, validate=validate.Range(1, 10**9))
    max_list_items = Whole(load_default=4096, validate=validate.Range(1, 10**9))
    max_token_ids = Whole(load_default=262_144, validate=validate.Range(1, 10**9))
    max_form_fields = Whole(load_default=1024, validate=validate.Range(1, 10**9))
    max_form_parts = Whole(load_default=64, validate=validate.Range(1, 10**9))
    max_form_field_kb = fields.Float(load_default=1024.0, validate=validate.Range(min=0.001))
    request_timeout_s = fields.Float(load_default=300.0, validate=validate.Range(min=0.1))
    drain_timeout_s = fields.Float(load_default=30.0, validate=validate.Range(min=0, max=86400))
    log_level = fields.String(
        load_default="info",
        validate=validate.OneOf(["debug", "info", "warning", "error"]),
    )
    log_format = fields.String(load_default="auto", validate=validate.OneOf(LOG_FORMATS))


SERVER_DEFAULTS: dict[str, Any] = ServerSchema().load({})  # the `Config` defaults: one source


class InstanceSchema(Schema):
    """`[bindings.<instance>]`: core keys; the rest is checked by the binding type's schema."""

    class Meta:
        unknown = "include"

    type = fields.String(required=True)
    default_model = fields.String(load_default=None, allow_none=True)
    enabled = fields.Boolean(load_default=True)
    max_concurrent = Whole(load_default=None, allow_none=True, validate=validate.Range(1, 100_000))
    max_loaded_models = Whole(
        load_default=None, allow_none=True, validate=validate.Range(1, 100_000)
    )
    default_max_tokens = Whole(
        load_default=None, allow_none=True, validate=validate.Range(1, 10_000_000)
    )


class ConfigSchema(Schema):
    """The whole lollms.toml file."""

    class Meta:
        unknown = RAISE

    server = fields.Nested(ServerSchema, load_default=lambda: ServerSchema().load({}))
    bindings = fields.Dict(
        keys=fields.String(validate=INSTANCE_NAME),
        values=fields.Nested(InstanceSchema),
        load_default=dict,
    )
    defaults = fields.Dict(
        keys=fields.String(validate=validate.OneOf(GENERATION_TYPES)),
        values=fields.String(),
        load_default=dict,
    )
    personalities = fields.Nested(
        PersonalitiesSchema, load_default=lambda: PersonalitiesSchema().load({})
    )
    functions = fields.Nested(FunctionsSchema, load_default=lambda: FunctionsSchema().load({}))
    security = fields.Nested(SecuritySchema, load_default=lambda: SecuritySchema().load({}))
    resources = fields.Nested(ResourcesSchema, load_default=lambda: ResourcesSchema().load({}))
    resilience = fields.Nested(ResilienceSchema, load_default=lambda: ResilienceSchema().load({}))
    routes = fields.Dict(
        keys=fields.String(validate=NAME_OF_ROUTE), values=RouteField(), load_default=dict
    )
    fleet = fields.Nested(FleetSchema, load_default=lambda: FleetSchema().load({}))
    storage = fields.Nested(StorageSchema, load_default=lambda: StorageSchema().load({}))
    tracing = fields.Nested(TracingSchema, load_default=lambda: TracingSchema().load({}))


@dataclass
class InstanceConfig:
    """One configured binding instance."""

    name: str
    type: str
    default_model: str | None = None
    enabled: bool = True
    max_concurrent: int | None = None
    max_loaded_models: int | None = None
    default_max_tokens: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    """The validated configuration the server runs with."""

    host: str = SERVER_DEFAULTS["host"]
    port: int = SERVER_DEFAULTS["port"]
    data_dir: Path = field(default_factory=lambda: default_data_dir())
    max_body_bytes: int = int(SERVER_DEFAULTS["max_body_mb"] * 1024 * 1024)
    limits: RequestLimits = field(default_factory=lambda: _request_limits(SERVER_DEFAULTS))
    request_timeout_s: float = SERVER_DEFAULTS["request_timeout_s"]
    drain_timeout_s: float = SERVER_DEFAULTS["drain_timeout_s"]
    log_level: str = SERVER_DEFAULTS["log_level"]
    log_format: str = SERVER_DEFAULTS["log_format"]
    bindings: dict[str, InstanceConfig] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    personality_folders: list[Path] = field(default_factory=list)
    personality_examples: bool = PersonalitiesSchema._declared_fields["examples"].load_default
    functions: FunctionsConfig = field(default_factory=schema_default(FunctionsConfig))
    security: SecurityConfig = field(default_factory=schema_default(SecurityConfig))
    resources: ResourcesConfig = field(default_factory=schema_default(ResourcesConfig))
    resilience: ResilienceConfig = field(default_factory=schema_default(ResilienceConfig))
    storage: StorageConfig = field(default_factory=schema_default(StorageConfig))
    tracing: TracingConfig = field(default_factory=schema_default(TracingConfig))
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.limits.max_body_bytes != self.max_body_bytes:  # one source for the body limit
            self.limits = replace(self.limits, max_body_bytes=self.max_body_bytes)

    @property
    def database_path(self) -> Path:
        """The SQLite database file (the store unless `[storage]` names another)."""
        return self.data_dir / "lollms.sqlite"

    @property
    def models_dir(self) -> Path:
        """Root of the per-generation-type model folders."""
        return self.data_dir / "models"

    @property
    def personalities_dir(self) -> Path:
        """The data dir's personalities folder."""
        return self.data_dir / "personalities"

    @property
    def functions_dir(self) -> Path:
        """The data dir's functions folder."""
        return self.data_dir / "functions"


def default_config_path() -> Path:
    """`$LOLLMS_CONFIG`, else `lollms.toml` inside the data dir."""
    env = os.environ.get("LOLLMS_CONFIG")
    return Path(env).expanduser() if env else default_data_dir() / CONFIG_FILE_NAME


def parse_config(raw: Mapping[str, Any], *, source: str = "config") -> Config:
    """Validate a config mapping and apply env overrides; raise ConfigError naming the key."""
    try:
        loaded = ConfigSchema().load(dict(raw))
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc.messages, raw, source)) from exc
    server = loaded["server"]
    host = os.environ.get("LOLLMS_HOST") or server["host"]
    port = _env_port() if os.environ.get("LOLLMS_PORT") else server["port"]
    data_env = os.environ.get("LOLLMS_DATA_DIR")
    data_dir = Path(data_env or server["data_dir"] or default_data_dir()).expanduser()
    instances = {
        name: InstanceConfig(
            name=name,
            type=spec.pop("type"),
            default_model=spec.pop("default_model"),
            enabled=spec.pop("enabled"),
            max_concurrent=spec.pop("max_concurrent"),
            max_loaded_models=spec.pop("max_loaded_models"),
            default_max_tokens=spec.pop("default_max_tokens"),
            settings=spec,
        )
        for name, spec in loaded["bindings"].items()
    }
    for name, settings in fleet_instances(loaded["fleet"], instances).items():
        instances[name] = InstanceConfig(name=name, type=FLEET_TYPE, settings=settings)
    return Config(
        host=host,
        port=port,
        data_dir=data_dir,
        max_body_bytes=int(server["max_body_mb"] * 1024 * 1024),
        limits=_request_limits(server),
        request_timeout_s=server["request_timeout_s"],
        drain_timeout_s=server["drain_timeout_s"],
        log_level=server["log_level"],
        log_format=server["log_format"],
        bindings=instances,
        defaults=dict(loaded["defaults"]),
        personality_folders=[Path(p).expanduser() for p in loaded["personalities"]["folders"]],
        personality_examples=loaded["personalities"]["examples"],
        functions=FunctionsConfig(
            folders=[Path(p).expanduser() for p in loaded["functions"]["folders"]],
            allow_unsafe=loaded["functions"]["allow_unsafe"],
            max_steps=loaded["functions"]["max_steps"],
            timeout_s=loaded["functions"]["timeout_s"],
            max_result_chars=loaded["functions"]["max_result_chars"],
        ),
        security=SecurityConfig(**loaded["security"]),
        resources=ResourcesConfig(**loaded["resources"]),
        resilience=ResilienceConfig(**loaded["resilience"]),
        storage=StorageConfig(**loaded["storage"]),
        tracing=TracingConfig(**loaded["tracing"]),
        routes=dict(loaded["routes"]),
    )


def _request_limits(server: Mapping[str, Any]) -> RequestLimits:
    mib = 1024 * 1024
    return RequestLimits(
        max_body_bytes=int(server["max_body_mb"] * mib),
        max_text_body_bytes=int(server["max_text_body_mb"] * mib),
        body_timeout_s=server["body_timeout_s"],
        max_json_values=server["max_json_values"],
        max_list_items=server["max_list_items"],
        max_token_ids=server["max_token_ids"],
        max_form_fields=server["max_form_fields"],
        max_form_parts=server["max_form_parts"],
        max_form_field_bytes=int(server["max_form_field_kb"] * 1024),
    )


def port_number(value: str) -> int:
    """A port given as text (`--port`, `LOLLMS_PORT`): an integer 0-65535, else ValueError."""
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise ValueError(f"got {value!r}; allowed: an integer 0-65535")
    return int(value)


def _env_port() -> int:
    try:
        return port_number(os.environ["LOLLMS_PORT"])
    except ValueError as exc:
        raise ConfigError(f"LOLLMS_PORT: {exc}") from None


def load_config(path: Path | None = None, *, create: bool = True) -> Config:
    """Read (or on first run write) the config file and return the validated Config."""
    path = path or default_config_path()
    if not path.exists():
        if not create:
            raise ConfigError(f"no config file at {path}; run `lollms-server config init`")
        try:
            write_default_config(path)
        except OSError as exc:
            raise ConfigError(
                f"no config file at {path}, and the default one cannot be written there:"
                f" {exc.strerror or exc} ({exc.filename}); check LOLLMS_DATA_DIR or --config"
            ) from exc
        if path != default_data_dir() / CONFIG_FILE_NAME:  # named by --config or LOLLMS_CONFIG
            # on stderr even before logging is set up: a mistyped path shows
            logging.getLogger(__name__).warning(
                "no config file at %s: wrote the default one there (first run)", path
            )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    config = parse_config(raw, source=str(path))
    config.path = path
    prepare_data_dir(config)
    return config


def prepare_data_dir(config: Config) -> None:
    """Create the data dir with its models/ and personalities/ folders (a ConfigError naming
    the dir when it cannot be: a file in the way, no permission, a read-only mount)."""
    folders = [config.data_dir, config.personalities_dir, config.functions_dir, config.models_dir]
    folders += [config.models_dir / generation_type for generation_type in GENERATION_TYPES]
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"the data dir {config.data_dir} cannot be used: {exc.strerror or exc}"
            f" ({exc.filename}); set LOLLMS_DATA_DIR or [server] data_dir to a writable folder"
        ) from exc


def write_default_config(path: Path) -> None:
    """Write the commented default config file (the embedded defaults)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEFAULT_CONFIG_TEXT, encoding="utf-8")


def describe_errors(messages: Any, raw: Any, prefix: str) -> str:
    """Turn marshmallow's nested messages into lines 'key: got VALUE; problem'."""
    lines: list[str] = []
    _walk(messages, raw, [], lines)
    return f"invalid configuration in {prefix}:\n" + "\n".join(f"  {line}" for line in lines)


def _walk(messages: Any, raw: Any, path: list[str], lines: list[str]) -> None:
    if isinstance(messages, dict):
        for key, sub in messages.items():
            value = raw.get(key) if isinstance(raw, Mapping) else None
            _walk(sub, value, [*path, str(key)], lines)
        return
    key = ".".join(p for p in path if p not in ("key", "value")) or "(root)"
    for problem in messages if isinstance(messages, list) else [messages]:
        if problem == "Unknown field.":
            lines.append(f"{key}: unknown key")
        else:
            lines.append(f"{key}: got {mask_text(repr(raw))}; {problem}")  # no URL password
