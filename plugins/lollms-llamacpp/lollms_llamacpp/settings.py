"""Settings of a `llamacpp` binding instance (the `[bindings.<name>]` table)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

#: CommonParams attributes the binding sets itself; `extra_args` may not override them.
MANAGED_PARAMS = frozenset(
    {"model", "hostnames", "port", "model_alias", "api_keys", "embedding", "pooling_type"}
)


class LlamaCppSettings(Schema):
    """Where the GGUF files are and how each model's llama.cpp server is started."""

    models_folders = fields.List(
        fields.String(validate=validate.Length(min=1)),
        load_default=list,
        metadata={"help": "folders of *.gguf files; default <data dir>/models/ttt"},
    )
    n_ctx = fields.Integer(load_default=4096, validate=validate.Range(0, 10_000_000))
    n_gpu_layers = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(-1, 100_000)
    )
    n_threads = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(1, 1024))
    n_parallel = fields.Integer(load_default=2, validate=validate.Range(1, 256))
    embedding_models = fields.List(fields.String(), load_default=list)
    preload = fields.List(fields.String(), load_default=list)
    extra_args = fields.Dict(keys=fields.String(), values=fields.Raw(), load_default=dict)
    startup_timeout_s = fields.Float(load_default=120.0, validate=validate.Range(min=1))
    stop_timeout_s = fields.Float(load_default=10.0, validate=validate.Range(min=0.1))
    read_timeout_s = fields.Float(load_default=300.0, validate=validate.Range(min=0.1))
    health_timeout_s = fields.Float(load_default=3.0, validate=validate.Range(min=0.1))

    @validates("extra_args")
    def _check_extra_args(self, value: dict[str, Any], **kwargs: Any) -> None:
        for key, item in value.items():
            if key.split(".")[0] in MANAGED_PARAMS:
                raise ValidationError(f"{key!r} is set by the binding; remove it from extra_args")
            if not isinstance(item, (bool, int, float, str)):
                raise ValidationError(f"{key!r}: values are numbers, strings or booleans")
