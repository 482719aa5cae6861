"""Upstream lollms_server's API models (lollms_server/api/models.py there), re-expressed as
field kinds, and `conforms`, which checks a JSON value against one.

Kinds: `str`, `int`, `float`, `bool`, `any`, `dict`; `list[K]`, `map[K]` (a dict of K by
string), a model name, `enum:a|b`; a `?` suffix: null allowed. Every field of a model must be
present: FastAPI serialises a response model's defaults, so upstream's clients index them.
"""

from __future__ import annotations

from typing import Any

MODELS: dict[str, dict[str, str]] = {
    "HealthResponse": {"status": "str", "version": "str?", "api_key_required": "bool"},
    "BindingTypeInfo": {
        "type_name": "str",
        "display_name": "str?",
        "version": "str?",
        "author": "str?",
        "description": "str?",
        "requirements": "list[str]?",
        "supports_streaming": "bool?",
    },
    "BindingInstanceInfo": {"type": "str", "binding_instance_name": "str"},
    "ListBindingsResponse": {
        "binding_types": "map[BindingTypeInfo]",
        "binding_instances": "map[BindingInstanceInfo]",
    },
    "PersonalityInfo": {
        "name": "str",
        "author": "str?",
        "version": "str?",
        "description": "str?",
        "category": "str?",
        "language": "str?",
        "tags": "list[str]",
        "icon": "str?",
        "is_scripted": "bool",
        "path": "str",
    },
    "ListPersonalitiesResponse": {"personalities": "map[PersonalityInfo]"},
    "ListFunctionsResponse": {"functions": "list[str]"},
    "ModelInfo": {
        "name": "str",
        "size": "int?",
        "modified_at": "str?",
        "quantization_level": "str?",
        "format": "str?",
        "family": "str?",
        "families": "list[str]?",
        "parameter_size": "str?",
        "context_size": "int?",
        "max_output_tokens": "int?",
        "template": "str?",
        "license": "str?",
        "homepage": "str?",
        "supports_vision": "bool",
        "supports_audio": "bool",
        "details": "dict",
    },
    "ListAvailableModelsResponse": {"binding_instance_name": "str", "models": "list[ModelInfo]"},
    "ListModelsResponse": {"models": "map[list[str]]"},
    "OutputData": {
        "type": "enum:text|image|audio|video|json|error|info",
        "data": "any",
        "mime_type": "str?",
        "thoughts": "str?",
        "metadata": "dict?",
    },
    "GenerateResponse": {
        "personality": "str?",
        "request_id": "str?",
        "output": "list[OutputData]",
        "execution_time": "float?",
    },
    "StreamChunk": {
        "type": "enum:chunk|final|error|info|function_call",
        "content": "any",
        "thoughts": "str?",
        "metadata": "dict?",
    },
    "TokenizeResponse": {"tokens": "list[int]", "count": "int"},
    "DetokenizeResponse": {"text": "str"},
    "CountTokensResponse": {"count": "int"},
    "GetModelInfoResponse": {
        "binding_instance_name": "str",
        "model_name": "str",
        "model_type": "enum:ttt|tti|tts|stt|ttv|ttm|vlm|generic?",
        "context_size": "int?",
        "max_output_tokens": "int?",
        "supports_vision": "bool",
        "supports_audio": "bool",
        "supports_streaming": "bool",
        "details": "dict",
    },
    "ListActiveBindingsResponse": {"bindings": "map[BindingInstanceInfo]"},
    "GetDefaultBindingsResponse": {"defaults": "map[scalar?]"},
    "HTTPError": {"detail": "str"},  # FastAPI's HTTPException body
}
SCALARS = {"str": str, "bool": bool, "dict": dict}


def conforms(value: Any, kind: str, where: str = "body") -> list[str]:
    """The problems of `value` against `kind` (empty: it conforms)."""
    if kind.endswith("?"):
        return [] if value is None else conforms(value, kind[:-1], where)
    if kind == "any":
        return []
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{where}: {value!r} is not an int"]
    if kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{where}: {value!r} is not a number"]
    if kind == "scalar":  # upstream's Union[str, int]
        return [] if isinstance(value, (str, int)) else [f"{where}: {value!r} is no str/int"]
    if kind in SCALARS:
        ok = isinstance(value, SCALARS[kind])
        return [] if ok else [f"{where}: {value!r} is not {kind}"]
    if kind.startswith("enum:"):
        ok = value in kind[5:].split("|")
        return [] if ok else [f"{where}: {value!r} is none of {kind[5:]}"]
    if kind.startswith(("list[", "map[")):
        inner = kind[kind.index("[") + 1 : -1]
        if kind.startswith("list["):
            if not isinstance(value, list):
                return [f"{where}: {type(value).__name__} is not a list"]
            items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        else:
            if not isinstance(value, dict):
                return [f"{where}: {type(value).__name__} is not an object"]
            items = [(f"{where}.{k}", v) for k, v in value.items()]
        return [p for name, item in items for p in conforms(item, inner, name)]
    return model_problems(value, kind, where)


def model_problems(value: Any, model: str, where: str = "body") -> list[str]:
    """The problems of `value` as an instance of upstream's `model`."""
    if not isinstance(value, dict):
        return [f"{where}: {type(value).__name__} is not a {model} object"]
    problems = []
    for name, kind in MODELS[model].items():
        if name not in value:
            problems.append(f"{where}.{name}: missing ({model})")
        else:
            problems.extend(conforms(value[name], kind, f"{where}.{name}"))
    return problems


def assert_model(value: Any, model: str) -> None:
    """Fail naming every field where `value` is not upstream's `model`."""
    problems = model_problems(value, model)
    assert not problems, "\n".join(problems)
