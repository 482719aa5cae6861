"""Functions (tools): callables from function folders and plugins, validated and run safely."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..config_sections import FUNCTION_RESULT_CHARS, FUNCTION_TIMEOUT_S
from ..errors import Forbidden, NotFound
from ..function_marks import MARK as MARK
from ..function_marks import function as function
from .admin_threads import cancelled_from_outside, run_in_thread
from .function_schema import parameters_schema

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
CallObserver = Callable[["CallOutcome", float], Awaitable[None]]  # (outcome, seconds)
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what OpenAI-compatible servers accept


@dataclass(frozen=True)
class Function:
    """A callable exposed as a tool."""

    name: str
    description: str
    parameters: dict[str, Any]
    call: Callable[..., Any]
    source: str
    unsafe: bool = False
    enabled: bool = True
    timeout_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The public description returned by list_functions."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "source": self.source,
            "unsafe": self.unsafe,
            "enabled": self.enabled,
        }

    def tool_spec(self) -> dict[str, Any]:
        """The OpenAI `tools` entry describing this function to a model."""
        spec = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": spec}


@dataclass(frozen=True)
class CallOutcome:
    """What running one call produced: a result for the model, or the reason it failed."""

    name: str
    arguments: dict[str, Any]
    result: str | None = None
    error: str | None = None

    @property
    def for_model(self) -> str:
        """The tool message content the model reads next."""
        if self.error is not None or self.result is None:
            return json.dumps({"error": self.error or "no result"})
        return self.result


def describe_callable(
    func: Callable[..., Any], source: str, allowed_unsafe: Iterable[str] = ()
) -> Function:
    """Build a Function from a callable's marks, name, docstring and type hints."""
    marks = getattr(func, MARK, None) or {}
    summary, schema = parameters_schema(func)
    name = str(marks.get("name") or getattr(func, "__name__", "function"))
    if not TOOL_NAME.fullmatch(name):  # OpenAI-compatible servers refuse the whole request
        raise ValueError(
            f"{name!r} is not a valid tool name (1-64 letters, digits, _ or -); "
            "name it with @function(name=...)"
        )
    unsafe = bool(marks.get("unsafe"))
    allowed = set(allowed_unsafe)
    return Function(
        name=name,
        description=marks.get("description") or summary,
        parameters=marks.get("parameters") or schema,
        call=func,
        source=source,
        unsafe=unsafe,
        enabled=not unsafe or "*" in allowed or name in allowed,
        timeout_s=marks.get("timeout_s"),
    )


@dataclass
class FunctionRegistry:
    """Functions by name; a duplicate name is reported and the first one kept."""

    allowed_unsafe: tuple[str, ...] = ()
    timeout_s: float = FUNCTION_TIMEOUT_S
    max_result_chars: int = FUNCTION_RESULT_CHARS
    by_name: dict[str, Function] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    on_call: CallObserver | None = None

    def add_callables(self, funcs: Iterable[Callable[..., Any]], source: str) -> None:
        """Describe and add callables registered by `source`."""
        for func in funcs:
            try:
                function = describe_callable(func, source, self.allowed_unsafe)
            except (TypeError, ValueError, NameError) as exc:
                self.problems.append(f"{source}: {func!r} cannot be described: {exc}")
                continue
            if function.name in self.by_name:
                self.problems.append(
                    f"function {function.name!r} from {source} ignored: already defined by "
                    f"{self.by_name[function.name].source}"
                )
                continue
            self.by_name[function.name] = function

    def replace_with(self, other: FunctionRegistry) -> None:
        """Take `other`'s functions (a reload); holders of this registry see the new set."""
        self.by_name, self.problems = other.by_name, other.problems

    def load_folders(self, folders: Iterable[Path]) -> None:
        """Import every `<folder>/*.py` and add its callables marked with `@function`."""
        for folder in folders:
            for path in sorted(folder.glob("*.py")) if folder.is_dir() else ():
                try:
                    module = import_file(path, f"lollms_functions.{folder.name}.{path.stem}")
                except (Exception, SystemExit) as exc:  # noqa: BLE001 - a broken file (one
                    # that calls sys.exit() too) is reported, not fatal
                    self.problems.append(f"{path}: not loaded: {type(exc).__name__}: {exc}")
                    log.warning("functions file %s not loaded: %s", path, exc)
                    continue
                marked = [v for v in vars(module).values() if callable(v) and hasattr(v, MARK)]
                self.add_callables(marked, str(path))

    def usable(self, names: Iterable[str]) -> list[Function]:
        """The named functions; unknown names are 404, unsafe ones not enabled are 403."""
        chosen = []
        for name in names:
            function = self.by_name.get(name)
            if function is None:
                known = ", ".join(sorted(self.by_name)) or "none registered"
                raise NotFound(f"no function named {name!r}; functions: {known}", param="functions")
            if not function.enabled:
                raise Forbidden(
                    f"function {name!r} is marked unsafe and the admin has not enabled it "
                    "([functions] allow_unsafe)",
                    param="functions",
                )
            chosen.append(function)
        return chosen

    async def run(self, function: Function, arguments: str | dict[str, Any]) -> CallOutcome:
        """Validate the arguments against the schema, then call within the time limit; the
        outcome is reported to `on_call` (metrics and audit)."""
        started = time.monotonic()
        outcome = await self._run(function, arguments)
        if self.on_call is not None:
            try:
                await self.on_call(outcome, time.monotonic() - started)
            except Exception:  # accounting must never change what the model is told
                log.exception("could not account for the call of %s", function.name)
        return outcome

    async def _run(self, function: Function, arguments: str | dict[str, Any]) -> CallOutcome:
        try:
            args = json.loads(arguments) if isinstance(arguments, str) else dict(arguments)
        except json.JSONDecodeError as exc:
            return CallOutcome(function.name, {}, error=f"arguments are not valid JSON: {exc}")
        if not isinstance(args, dict):
            return CallOutcome(function.name, {}, error="arguments must be a JSON object")
        if problem := schema_problem(function.parameters, args):
            return CallOutcome(function.name, args, error=f"invalid arguments: {problem}")
        limit = function.timeout_s or self.timeout_s
        try:
            async with asyncio.timeout(limit):
                if inspect.iscoroutinefunction(function.call):
                    value = await function.call(**args)
                else:
                    value = await run_in_thread(function.call, **args)
        except TimeoutError:
            return CallOutcome(function.name, args, error=f"no result within {limit:g}s")
        except (Exception, SystemExit, asyncio.CancelledError) as exc:
            # the model learns what went wrong; a sys.exit() must not stop the server, nor a
            # cancel of the function's own end the request as if the client had left
            if isinstance(exc, asyncio.CancelledError) and cancelled_from_outside():
                raise
            return CallOutcome(function.name, args, error=f"{type(exc).__name__}: {exc}")
        try:  # strict JSON: the model, the response and the audit log all read it
            text = (
                value if isinstance(value, str) else json.dumps(value, default=str, allow_nan=False)
            )
        except (ValueError, TypeError, RecursionError) as exc:
            return CallOutcome(function.name, args, error=f"the result is not JSON: {exc}")
        if len(text) > self.max_result_chars:  # an upstream's 413 or a context overflow
            # would blame the caller's request for what the function returned
            return CallOutcome(
                function.name,
                args,
                error=f"the result is {len(text):,} characters, over the limit of "
                f"{self.max_result_chars:,} ([functions] max_result_chars)",
            )
        return CallOutcome(function.name, args, result=text)


def schema_problem(schema: dict[str, Any], value: Any) -> str | None:
    """The first reason `value` does not match the JSON Schema, or None."""
    import jsonschema  # imported on first use: it costs ~60 ms at start-up

    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


def import_file(path: Path, module_name: str) -> Any:
    """Import a Python file as a fresh module (re-imported on every call: reloads see edits)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module
