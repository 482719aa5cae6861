"""`SdkContract`: a plugin's package imports nothing of the core but `lollms_server.sdk`."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from .base import ContractBase

ALLOWED = ("lollms_server.sdk",)


def core_imports(path: Path) -> list[str]:
    """The `lollms_server` modules (and `from lollms_server import x` names) `path` imports,
    lazy imports inside functions included."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "lollms_server"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "lollms_server":
                found += [f"lollms_server.{a.name}" for a in node.names]
            elif node.module.startswith("lollms_server."):
                found.append(node.module)
    return found


def package_modules(module: str) -> list[Path]:
    """Every module file of the top-level package that holds `module`, its tests excluded."""
    spec = importlib.util.find_spec(module.split(".")[0])
    if spec is None or spec.origin is None:
        return []
    origin = Path(spec.origin)
    if origin.name != "__init__.py":  # a single-module plugin
        return [origin]
    root = origin.parent
    return sorted(p for p in root.rglob("*.py") if "tests" not in p.relative_to(root).parts)


def forbidden_imports(module: str) -> dict[str, list[str]]:
    """File -> the core modules it imports besides the SDK, over the package of `module`."""
    found = {}
    for path in package_modules(module):
        others = [name for name in core_imports(path) if name not in ALLOWED]
        if others:
            found[str(path)] = others
    return found


class SdkContract(ContractBase):
    """The binding's package imports only `lollms_server.sdk` of the core: the surface that
    stays put across core releases (its tests may also use `lollms_server.testing`)."""

    def test_package_imports_only_the_sdk(self) -> None:
        """No module of the binding's package imports the core's internals."""
        module = self.binding_type().__module__
        if module.split(".")[0] == "lollms_server":
            return  # the core's own binding (echo) is the core
        found = forbidden_imports(module)
        assert not found, (
            "; ".join(f"{path} imports {', '.join(names)}" for path, names in found.items())
            + " (import these names from lollms_server.sdk; the rest of the core may change)"
        )
