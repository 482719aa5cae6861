"""Settings of an `ollama` binding instance (the `[bindings.<name>]` table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError, fields, validate, validates

from lollms_server.sdk import KeepAlive, SettingsSchema

from .convert import normalize_host

HEADER_NAME = validate.Regexp(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$", error="not a header name")


@dataclass(frozen=True)
class OllamaConfig:
    """An `ollama` instance's loaded settings (the defaults are `OllamaSettings`')."""

    host: str
    keep_alive: float | str | None
    request_timeout_s: float
    connect_timeout_s: float
    health_timeout_s: float
    models: list[str]
    headers: dict[str, str]
    auto_pull: bool


class OllamaSettings(SettingsSchema):
    """Where the Ollama server is, how long to wait for it, and which of its models to offer."""

    Settings = OllamaConfig

    host = fields.String(
        load_default="http://127.0.0.1:11434",
        metadata={"help": "base URL (or host:port) of the Ollama server"},
    )
    keep_alive = KeepAlive(
        load_default=None,
        allow_none=True,
        metadata={"help": 'how long Ollama keeps a model loaded: seconds or "5m"; -1 forever'},
    )
    request_timeout_s = fields.Float(load_default=300.0, validate=validate.Range(min=0.1))
    connect_timeout_s = fields.Float(load_default=5.0, validate=validate.Range(min=0.1))
    health_timeout_s = fields.Float(load_default=3.0, validate=validate.Range(min=0.1))
    models = fields.List(
        fields.String(validate=validate.Length(min=1, max=256)),
        load_default=list,
        metadata={"help": "allow-list of model names; empty offers every model of the server"},
    )
    headers = fields.Dict(
        keys=fields.String(validate=HEADER_NAME),
        values=fields.String(validate=validate.Length(max=8192)),
        load_default=dict,
        metadata={"help": "extra HTTP headers (e.g. Authorization for a proxy); never shown"},
    )
    auto_pull = fields.Boolean(
        load_default=False,
        metadata={"help": "pull a missing model on first use (progress as info chunks)"},
    )

    @validates("host")
    def _check_host(self, value: str, **kwargs: Any) -> None:
        try:
            normalize_host(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
