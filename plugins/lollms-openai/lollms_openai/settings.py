"""Settings of an `openai` binding instance (the `[bindings.<name>]` table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError, fields, validate, validates, validates_schema
from yarl import URL

from lollms_server.sdk import SettingsSchema, Whole

#: What an instance may claim; `capabilities` narrows it to what the remote server does.
ALL_CAPABILITIES = ("ttt", "stream", "vision", "tools", "embeddings", "tti", "i2i", "tts", "stt")
DEFAULT_EXTRA_PARAMETERS = ("top_k", "min_p", "repeat_penalty")


@dataclass(frozen=True)
class OpenAIConfig:
    """An `openai` instance's loaded settings (the defaults are `OpenAISettings`')."""

    base_url: str
    api_key: str | None
    api_key_env: str | None
    models: list[str]
    check_models: bool
    models_cache_s: float
    capabilities: list[str] | None
    extra_parameters: list[str]
    rename_parameters: dict[str, str]
    stream_usage: bool
    default_voice: str
    connect_timeout_s: float
    read_timeout_s: float
    health_timeout_s: float
    retries: int
    max_retry_after_s: float


class OpenAISettings(SettingsSchema):
    """Where the server is, how to authenticate, which models, how long to wait."""

    Settings = OpenAIConfig

    base_url = fields.String(load_default="https://api.openai.com/v1")
    api_key = fields.String(load_default=None, allow_none=True)
    api_key_env = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]*$")
    )
    models = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)
    check_models = fields.Boolean(load_default=True)
    models_cache_s = fields.Float(load_default=60.0, validate=validate.Range(min=0))
    capabilities = fields.List(
        fields.String(validate=validate.OneOf(ALL_CAPABILITIES)), load_default=None, allow_none=True
    )
    extra_parameters = fields.List(
        fields.String(validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,63}$")),
        load_default=lambda: list(DEFAULT_EXTRA_PARAMETERS),
    )
    rename_parameters = fields.Dict(
        keys=fields.String(validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,63}$")),
        values=fields.String(validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,63}$")),
        load_default=dict,
        metadata={"help": "chat parameters under the server's names, e.g. seed = random_seed"},
    )
    stream_usage = fields.Boolean(
        load_default=True,
        metadata={"help": "ask for usage in streams (stream_options); false for Mistral"},
    )
    default_voice = fields.String(load_default="alloy")
    connect_timeout_s = fields.Float(load_default=5.0, validate=validate.Range(min=0.1))
    read_timeout_s = fields.Float(load_default=300.0, validate=validate.Range(min=0.1))
    health_timeout_s = fields.Float(load_default=5.0, validate=validate.Range(min=0.1))
    retries = Whole(load_default=2, validate=validate.Range(0, 10))
    max_retry_after_s = fields.Float(load_default=30.0, validate=validate.Range(min=0))

    @validates("base_url")
    def _check_base_url(self, value: str, **kwargs: Any) -> None:
        try:
            url = URL(value)
        except (TypeError, ValueError) as exc:
            raise ValidationError("not a URL") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValidationError("must be an http:// or https:// URL with a host")

    @validates_schema
    def _one_key_source(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("api_key") and data.get("api_key_env"):
            raise ValidationError("set api_key or api_key_env, not both", "api_key_env")
