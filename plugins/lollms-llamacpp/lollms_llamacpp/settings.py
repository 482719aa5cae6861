"""Settings of a `llamacpp` binding instance (the `[bindings.<name>]` table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError, fields, validate, validates

from lollms_server.sdk import SettingsSchema, Whole

from .tool_use import template_problem

#: CommonParams attributes the binding sets itself; `extra_args` may not override them.
MANAGED_PARAMS = frozenset(
    {
        "model",
        "hostnames",
        "port",
        "model_alias",
        "api_keys",
        "embedding",
        "pooling_type",
        "chat_template",
    }
)


class AutoOrBool(fields.Field[bool | str]):
    """`"auto"`, `true` or `false`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool | str:
        if isinstance(value, bool):
            return value
        if value == "auto":
            return "auto"
        raise ValidationError(f'got {value!r}; allowed: "auto", true or false')


@dataclass(frozen=True)
class LlamaCppConfig:
    """A `llamacpp` instance's loaded settings (the defaults are `LlamaCppSettings`')."""

    models_folders: list[str]
    n_ctx: int
    n_gpu_layers: int | None
    gpu_placement: bool | str
    n_threads: int | None
    n_parallel: int
    embedding_models: list[str]
    preload: list[str]
    extra_args: dict[str, Any]
    model_extra_args: dict[str, dict[str, Any]]
    chat_template: str | None
    chat_templates: dict[str, str]
    tool_call_start: str | None
    startup_timeout_s: float
    stop_timeout_s: float
    read_timeout_s: float
    health_timeout_s: float


class LlamaCppSettings(SettingsSchema):
    """Where the GGUF files are and how each model's llama.cpp server is started."""

    Settings = LlamaCppConfig

    models_folders = fields.List(
        fields.String(validate=validate.Length(min=1)),
        load_default=list,
        metadata={"help": "folders of *.gguf files; default <data dir>/models/ttt"},
    )
    n_ctx = Whole(load_default=4096, validate=validate.Range(0, 10_000_000))
    n_gpu_layers = Whole(load_default=None, allow_none=True, validate=validate.Range(-1, 100_000))
    gpu_placement = AutoOrBool(
        load_default="auto",
        metadata={"help": "let the core choose each model's GPU; auto: when xllamacpp has CUDA"},
    )
    n_threads = Whole(load_default=None, allow_none=True, validate=validate.Range(1, 1024))
    n_parallel = Whole(load_default=2, validate=validate.Range(1, 256))
    embedding_models = fields.List(fields.String(), load_default=list)
    preload = fields.List(fields.String(), load_default=list)
    extra_args = fields.Dict(keys=fields.String(), values=fields.Raw(), load_default=dict)
    model_extra_args = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(keys=fields.String(), values=fields.Raw()),
        load_default=dict,
        metadata={"help": "extra_args per model name, over the instance's extra_args"},
    )
    chat_template = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1),
        metadata={"help": '"chatml-tools", a .jinja file or Jinja text; default: the GGUF\'s'},
    )
    chat_templates = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.Length(min=1)),
        load_default=dict,
        metadata={"help": "chat_template per model name"},
    )
    tool_call_start = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"help": "text a tool call starts with; a required call is prefilled with it"},
    )
    startup_timeout_s = fields.Float(load_default=120.0, validate=validate.Range(min=1))
    stop_timeout_s = fields.Float(load_default=10.0, validate=validate.Range(min=0.1))
    read_timeout_s = fields.Float(load_default=300.0, validate=validate.Range(min=0.1))
    health_timeout_s = fields.Float(load_default=3.0, validate=validate.Range(min=0.1))

    @validates("chat_template")
    def _check_chat_template(self, value: str | None, **kwargs: Any) -> None:
        problem = template_problem(value) if value else None
        if problem:
            raise ValidationError(problem)

    @validates("chat_templates")
    def _check_chat_templates(self, value: dict[str, str], **kwargs: Any) -> None:
        for model, template in value.items():
            problem = template_problem(template)
            if problem:
                raise ValidationError(f"{model!r}: {problem}")

    @validates("extra_args")
    def _check_extra_args(self, value: dict[str, Any], **kwargs: Any) -> None:
        problem = extra_args_problem(value)
        if problem:
            raise ValidationError(problem)

    @validates("model_extra_args")
    def _check_model_extra_args(self, value: dict[str, dict[str, Any]], **kwargs: Any) -> None:
        for model, args in value.items():
            problem = extra_args_problem(args)
            if problem:
                raise ValidationError(f"{model!r}: {problem}")


def extra_args_problem(value: dict[str, Any]) -> str | None:
    """Why an `extra_args` table is unusable, or None."""
    for key, item in value.items():
        if key == "chat_template":
            return "set the chat_template setting, not extra_args.chat_template"
        if key.split(".")[0] in MANAGED_PARAMS:
            return f"{key!r} is set by the binding; remove it from extra_args"
        if not isinstance(item, (bool, int, float, str)):
            return f"{key!r}: values are numbers, strings or booleans"
    return None
