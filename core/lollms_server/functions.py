"""Functions (tools): callables from plugins, described by a JSON Schema of their parameters."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}


@dataclass(frozen=True)
class Function:
    """A callable exposed as a tool."""

    name: str
    description: str
    parameters: dict[str, Any]
    call: Callable[..., Any]
    source: str

    def to_dict(self) -> dict[str, Any]:
        """The public description returned by list_functions."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "source": self.source,
        }


def describe_callable(func: Callable[..., Any], source: str) -> Function:
    """Build a Function from a callable's name, docstring and type hints."""
    hints = typing.get_type_hints(func)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, param in inspect.signature(func).parameters.items():
        annotation = typing.get_origin(hints.get(name)) or hints.get(name)
        properties[name] = {"type": _JSON_TYPES.get(annotation, "string")}
        if param.default is inspect.Parameter.empty:
            required.append(name)
    doc = inspect.getdoc(func) or ""
    return Function(
        name=getattr(func, "__name__", "function"),
        description=doc.splitlines()[0] if doc else "",
        parameters={"type": "object", "properties": properties, "required": required},
        call=func,
        source=source,
    )


class FunctionRegistry:
    """Functions by name; a duplicate name is reported and the first one kept."""

    def __init__(self) -> None:
        self.by_name: dict[str, Function] = {}
        self.problems: list[str] = []

    def add_callables(self, funcs: Iterable[Callable[..., Any]], source: str) -> None:
        """Describe and add callables registered by `source`."""
        for func in funcs:
            function = describe_callable(func, source)
            if function.name in self.by_name:
                self.problems.append(
                    f"function {function.name!r} from {source} ignored: already defined by "
                    f"{self.by_name[function.name].source}"
                )
                continue
            self.by_name[function.name] = function
