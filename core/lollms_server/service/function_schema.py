"""JSON Schema of a callable's parameters, derived from its type hints and docstring."""

from __future__ import annotations

import enum
import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any

_SCALARS: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}
_GOOGLE_ARG = re.compile(r"^\s{2,}(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")
_SPHINX_ARG = re.compile(r"^\s*:param\s+(?:[^:]+\s)?(\w+)\s*:\s*(.+)$")


def type_schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of one Python type annotation (unknown types accept anything)."""
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [member.value for member in annotation]}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [type_schema(arg) for arg in args]}
    if annotation in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset):
        schema: dict[str, Any] = {"type": "array"}
        if args and args[-1] is not Ellipsis:
            schema["items"] = type_schema(args[0])
        return schema
    if annotation is dict or origin is dict:
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = type_schema(args[1])
        return schema
    return {}


def docstring_parts(doc: str) -> tuple[str, dict[str, str]]:
    """The summary line and per-parameter descriptions (Google `Args:` or Sphinx `:param:`)."""
    lines = doc.splitlines()
    summary = lines[0].strip() if lines else ""
    described: dict[str, str] = {}
    in_args = False
    for line in lines[1:]:
        if sphinx := _SPHINX_ARG.match(line):
            described[sphinx.group(1)] = sphinx.group(2).strip()
            continue
        stripped = line.strip()
        if stripped.lower() in ("args:", "arguments:", "parameters:"):
            in_args = True
            continue
        if in_args and stripped and not line.startswith(" "):
            in_args = False
        if in_args and (google := _GOOGLE_ARG.match(line)):
            described[google.group(1).lstrip("*")] = google.group(2).strip()
    return summary, described


def parameters_schema(func: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
    """The description and the `parameters` JSON Schema (an object) of a callable."""
    hints = typing.get_type_hints(func)
    summary, described = docstring_parts(inspect.getdoc(func) or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, param in inspect.signature(func).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        schema = type_schema(hints.get(name, Any))
        if name in described:
            schema["description"] = described[name]
        if param.default is inspect.Parameter.empty:
            required.append(name)
        elif _is_json(param.default):
            schema["default"] = param.default
        properties[name] = schema
    schema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    return summary, schema


def _is_json(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict))
