"""The plugin SDK is the plugins' only door into the core: `lollms_server.sdk` and its names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lollms_server.sdk as sdk
from lollms_server.testing.boundary import ALLOWED, core_imports

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def package_modules() -> list[Path]:
    """Every module of every shipped plugin's package (its tests excluded)."""
    return sorted(
        path
        for package in PLUGINS.glob("lollms-*/lollms_*")
        for path in package.rglob("*.py")
        if "tests" not in path.relative_to(package).parts
    )


def test_every_plugin_package_is_walked() -> None:
    """The walk finds the six shipped plugins (a moved folder would make the check vacuous)."""
    walked = {path.relative_to(PLUGINS).parts[0] for path in package_modules()}
    assert len(walked) >= 6, walked


@pytest.mark.parametrize("path", package_modules(), ids=lambda p: str(p.relative_to(PLUGINS)))
def test_plugin_code_imports_only_the_sdk(path: Path) -> None:
    """A plugin's package code imports nothing of the core but `lollms_server.sdk`."""
    others = [name for name in core_imports(path) if name not in ALLOWED]
    assert not others, f"{path.relative_to(PLUGINS)} imports {others}; use lollms_server.sdk"


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The walk catches top-level, lazy and `from lollms_server import x` imports."""
    module = tmp_path / "m.py"
    module.write_text(
        "from lollms_server.sdk import Binding\n"
        "from lollms_server import keys\n"
        "def f():\n    import lollms_server.config\n"
        "    from lollms_server.resources import gpu\n",
        encoding="utf-8",
    )
    assert [n for n in core_imports(module) if n not in ALLOWED] == [
        "lollms_server.keys",
        "lollms_server.config",
        "lollms_server.resources",
    ]


def test_sdk_all_names_exist() -> None:
    """Every name `sdk.__all__` promises is there, once."""
    assert len(set(sdk.__all__)) == len(sdk.__all__)
    missing = [name for name in sdk.__all__ if not hasattr(sdk, name)]
    assert not missing


def test_sdk_exports_what_a_binding_needs() -> None:
    """The surface holds the base class, its context, the hook marker and the error taxonomy."""
    for name in ("Binding", "BindingContext", "hookimpl", "GenerationRequest", "Result"):
        assert name in sdk.__all__
    assert issubclass(sdk.ModelNotFound, sdk.LollmsError)


def integer_fields(path: Path) -> list[int]:
    """The lines where `path` builds marshmallow's truncating `fields.Integer`/`fields.Int`."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("Integer", "Int")
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "fields"
    ]


@pytest.mark.parametrize("path", package_modules(), ids=lambda p: str(p.relative_to(PLUGINS)))
def test_plugin_integers_refuse_fractions(path: Path) -> None:
    """A plugin setting like `n_ctx = 2048.5` is an error, not 2048: plugins use `sdk.Whole`."""
    assert integer_fields(path) == []


def test_whole_refuses_what_integer_truncates() -> None:
    """`sdk.Whole` is the field the check above asks for: 2.9 is refused, 2.0 and "2" load."""
    from marshmallow import Schema, ValidationError, fields

    class Settings(Schema):
        whole = sdk.Whole()
        truncating = fields.Integer()

    assert Settings().load({"truncating": 2.9}) == {"truncating": 2}
    with pytest.raises(ValidationError, match="Not a whole number"):
        Settings().load({"whole": 2.9})
    assert Settings().load({"whole": 2.0}) == Settings().load({"whole": "2"}) == {"whole": 2}


def test_a_settings_schema_refuses_fractions_in_plain_integers() -> None:
    """A third-party `SettingsSchema` that declares `fields.Integer` (not `sdk.Whole`) refuses
    `count = 2.5` too (it loaded 2); 2 and 2.0 still load, a plain Schema is left as it is."""
    from dataclasses import dataclass

    from marshmallow import ValidationError, fields

    @dataclass(frozen=True)
    class Counted:
        count: int

    class CountSettings(sdk.SettingsSchema):
        Settings = Counted
        count = fields.Integer(load_default=3)

    with pytest.raises(ValidationError, match=r"Not a whole number: 2\.5"):
        CountSettings().load({"count": 2.5})
    assert CountSettings().load({"count": 2.0}) == Counted(2)
    assert CountSettings().load({}) == Counted(3)
