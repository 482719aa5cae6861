"""Settings of a `lollms` binding instance (the `[bindings.<name>]` table)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError, fields, validate, validates, validates_schema
from yarl import URL

from lollms_server.sdk import BackendUnavailable, SettingsSchema, Whole


@dataclass(frozen=True)
class RemoteConfig:
    """A `lollms` instance's loaded settings (the defaults are `RemoteSettings`')."""

    base_url: str
    api_key: str | None
    api_key_env: str | None
    connect_timeout_s: float
    read_timeout_s: float
    health_timeout_s: float
    retries: int
    max_retry_after_s: float
    models_cache_s: float
    load_fresh_s: float

    def node_key(self, instance: str) -> str | None:
        """The node key: `api_key`, or the variable `api_key_env` names (which must be set)."""
        if not self.api_key_env:
            return self.api_key
        key = os.environ.get(self.api_key_env)
        if not key:
            raise BackendUnavailable(
                f"{instance!r} reads its node key from the environment variable "
                f"{self.api_key_env}, which is not set",
                binding=instance,
            )
        return key


class RemoteSettings(SettingsSchema):
    """Where the node is, its key, how long to wait."""

    Settings = RemoteConfig

    base_url = fields.String(
        required=True, metadata={"help": "the node's address, e.g. http://gpu1:9601"}
    )
    api_key = fields.String(
        load_default=None, allow_none=True, metadata={"help": "a key of the node (admin to load)"}
    )
    api_key_env = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]*$")
    )
    connect_timeout_s = fields.Float(load_default=5.0, validate=validate.Range(min=0.1))
    read_timeout_s = fields.Float(load_default=300.0, validate=validate.Range(min=0.1))
    health_timeout_s = fields.Float(load_default=5.0, validate=validate.Range(min=0.1))
    retries = Whole(load_default=1, validate=validate.Range(0, 10))
    max_retry_after_s = fields.Float(load_default=30.0, validate=validate.Range(min=0))
    models_cache_s = fields.Float(load_default=30.0, validate=validate.Range(min=0))
    load_fresh_s = fields.Float(
        load_default=2.0,
        validate=validate.Range(min=0.1),
        metadata={
            "help": "how long the node's reported load of other clients' work counts for "
            "least-busy without a fresher report; then it counts as none and the node is asked "
            "again (GET /api/v1/status)"
        },
    )

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
