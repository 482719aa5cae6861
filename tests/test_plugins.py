"""Plugin loading: entry points one at a time, broken plugins recorded, strict mode, duplicates."""

import inspect
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from marshmallow import Schema, fields, post_load

from lollms_server import hookspecs
from lollms_server.app import create_app
from lollms_server.bindings import Binding
from lollms_server.errors import ConfigError
from lollms_server.hookspecs import hookimpl
from lollms_server.plugins import load_plugins
from lollms_server.sdk import SettingsSchema, requires

ROOT = Path(__file__).resolve().parents[1]


def install_fake_distribution(
    site: Path, dist: str, entry_name: str, module: str, source: str, attr: str = ""
) -> None:
    """Write a real module plus dist-info with an entry point (naming the module, or `attr`
    in it); importlib.metadata finds it."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"  # as a wheel names it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    target = f"{module}:{attr}" if attr else module
    (info / "entry_points.txt").write_text(f"[lollms_server]\n{entry_name} = {target}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("fakeplug_")]:
        del sys.modules[name]


GOOD_PLUGIN = """
from lollms_server.bindings import Binding
from lollms_server.hookspecs import hookimpl

class ParrotBinding(Binding):
    name = "parrot"
    capabilities = frozenset({"ttt"})

@hookimpl
def register_bindings():
    return [ParrotBinding]
"""


def test_entry_point_plugin_is_found_with_version(site: Path) -> None:
    install_fake_distribution(site, "lollms-parrot", "parrot", "fakeplug_parrot", GOOD_PLUGIN)
    plugins = load_plugins()
    info = plugins.infos["parrot"]
    assert (info.distribution, info.version, info.binding_types) == (
        "lollms-parrot",
        "1.2.3",
        ["parrot"],
    )
    assert "echo" in plugins.binding_classes and "parrot" in plugins.binding_classes


def test_broken_plugin_is_recorded_and_others_still_load(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOLLMS_STRICT_PLUGINS", raising=False)
    install_fake_distribution(site, "lollms-broken", "broken", "fakeplug_broken", "import nope_x\n")
    plugins = load_plugins()
    assert "nope_x" in plugins.errors["broken"]
    assert "echo" in plugins.binding_classes


def test_strict_mode_makes_a_broken_plugin_fatal(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOLLMS_STRICT_PLUGINS", "1")
    install_fake_distribution(site, "lollms-broken", "broken", "fakeplug_broken2", "1/0\n")
    with pytest.raises(ConfigError, match="ZeroDivisionError"):
        load_plugins()


def test_two_distributions_with_one_entry_point_name_are_both_named(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin that loaded keeps its own row (distribution, bindings, no error); the one
    turned away is recorded apart, naming both distributions."""
    monkeypatch.delenv("LOLLMS_STRICT_PLUGINS", raising=False)
    macaw = GOOD_PLUGIN.replace("Parrot", "Macaw").replace('"parrot"', '"macaw"')
    install_fake_distribution(site, "lollms-parrot", "parrot", "fakeplug_parrot2", GOOD_PLUGIN)
    install_fake_distribution(site, "lollms-macaw", "parrot", "fakeplug_macaw", macaw)
    plugins = load_plugins()
    loaded = plugins.infos["parrot"]
    kept = {"parrot": "lollms-parrot", "macaw": "lollms-macaw"}
    assert loaded.error is None and len(loaded.binding_types) == 1, loaded
    assert loaded.distribution == kept[loaded.binding_types[0]], loaded
    other = ({"lollms-parrot", "lollms-macaw"} - {loaded.distribution}).pop()
    assert set(plugins.errors) == {f"parrot ({other})"}, plugins.errors
    message = plugins.errors[f"parrot ({other})"]
    assert other in message and str(loaded.distribution) in message, message


def test_duplicate_binding_type_names_both_plugins() -> None:
    class OtherEcho(Binding):
        name = "echo"

    impostor = types.SimpleNamespace(register_bindings=hookimpl(lambda: [OtherEcho]))
    with pytest.raises(ConfigError, match=r"'echo'.*'echo' and 'impostor'"):
        load_plugins(extra={"impostor": impostor})


def test_one_plugin_registering_a_type_name_twice_says_so() -> None:
    """Two classes of one plugin under one type name stop start-up naming the plugin and both
    classes (it said 'registered by two plugins: 'p' and 'p'; uninstall one of them'); the
    same class listed twice is one type."""

    class First(Binding):
        name = "twin"

    class Second(Binding):
        name = "twin"

    twins = types.SimpleNamespace(register_bindings=hookimpl(lambda: [First, Second]))
    with pytest.raises(ConfigError, match=r"plugin 'p' registers binding type 'twin' twice"):
        load_plugins(extra={"p": twins})
    repeated = types.SimpleNamespace(register_bindings=hookimpl(lambda: [First, First]))
    assert load_plugins(extra={"p": repeated}).binding_classes["twin"] is First


def test_hook_raising_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOLLMS_STRICT_PLUGINS", raising=False)

    def register_bindings() -> list[type[Binding]]:
        raise RuntimeError("boom")

    bad = types.SimpleNamespace(register_bindings=hookimpl(register_bindings))
    plugins = load_plugins(extra={"bad": bad})
    assert "boom" in plugins.errors["bad"]


def test_non_binding_class_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOLLMS_STRICT_PLUGINS", raising=False)
    odd = types.SimpleNamespace(register_bindings=hookimpl(lambda: [dict]))
    plugins = load_plugins(extra={"odd": odd})
    assert "not a Binding subclass" in plugins.errors["odd"]


def test_every_hook_is_documented() -> None:
    """Each hookspec has a docstring and is named in the README's plugin section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Write a binding plugin", 1)[1]
    specs = [
        name
        for name, obj in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(obj, "lollms_server_spec")
    ]
    assert {"register_bindings", "startup"} <= set(specs)
    for name in specs:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), name
        assert re.search(rf"`{name}", section), f"hook {name} missing from README"


async def test_plugin_routes_are_mounted_under_dash(make_client: Any) -> None:
    from aiohttp import web

    from lollms_server.security.auth import requires

    plugin_routes = web.RouteTableDef()

    @plugin_routes.get("/hello")
    @requires("user")  # a route that declares no access level is refused
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hi": True})

    extra = types.SimpleNamespace(register_routes=hookimpl(lambda: list(plugin_routes)))
    client = await make_client(plugins=load_plugins(extra={"greeter": extra}))
    response = await client.get("/-/greeter/hello")
    assert response.status == 200 and (await response.json()) == {"hi": True}


def test_every_hookspec_is_documented_for_plugin_authors() -> None:
    """Each hook the core defines is listed, with its signature, in the README's plugin section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Write a binding plugin", 1)[1].split("\n## ", 1)[0]
    specs = [
        name
        for name, func in vars(hookspecs).items()
        if callable(func) and hasattr(func, f"{hookspecs.PROJECT}_spec")
    ]
    assert specs, "no hookspec found: the marker attribute changed"
    undocumented = [
        name
        for name in specs
        if f"`{name}({', '.join(inspect.signature(vars(hookspecs)[name]).parameters)})`"
        not in section
    ]
    assert not undocumented, (
        f"hookspecs missing from README 'Write a binding plugin': {undocumented}"
    )


def test_every_binding_method_and_setting_is_documented_for_plugin_authors() -> None:
    """Each method and class setting a binding may override is named in the README's plugin
    section: a plugin author learns of `max_loaded()` or `books_memory` there, not by reading
    the core."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Write a binding plugin", 1)[1].split("\n## ", 1)[0]
    methods = [
        name for name, value in vars(Binding).items()
        if not name.startswith("_") and callable(value) and name != "ConfigSchema"
    ]  # fmt: skip
    settings = [name for name in Binding.__annotations__ if not name.startswith("_")]
    assert "max_loaded" in methods and "books_memory" in settings, "the base class changed"
    undocumented = [
        name for name in methods + settings
        if not re.search(rf"`(self\.)?{name}[`( ]", section)
    ]  # fmt: skip
    assert not undocumented, f"missing from README 'Write a binding plugin': {undocumented}"


def test_register_bindings_returning_a_class_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common slip `return MyBinding` (no list) marks that plugin broken, not the server."""
    monkeypatch.delenv("LOLLMS_STRICT_PLUGINS", raising=False)

    class Lone(Binding):
        name = "lone"

    for returned in (Lone, "lone"):
        odd = types.SimpleNamespace(register_bindings=hookimpl(lambda r=returned: r))
        plugins = load_plugins(extra={"odd": odd})
        assert "must return a list of Binding subclasses" in plugins.errors["odd"]
        assert "echo" in plugins.binding_classes


def test_binding_init_raising_names_the_instance(make_config: Any) -> None:
    """A binding whose `__init__` raises stops start-up with one ConfigError naming the
    instance, its type and the error (not a traceback out of the registry)."""

    class Fragile(Binding):
        name = "fragile"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            raise RuntimeError("cannot build")

    plugin = types.SimpleNamespace(register_bindings=hookimpl(lambda: [Fragile]))
    config = make_config({"bindings": {"f": {"type": "fragile"}}, "defaults": {"ttt": "f"}})
    with pytest.raises(ConfigError, match=r"bindings\.f: .*'fragile'.*RuntimeError.*cannot build"):
        create_app(config, load_plugins(extra={"frag": plugin}))


def test_config_schema_load_raising_names_the_instance(make_config: Any) -> None:
    """A ConfigSchema whose load raises something other than a ValidationError (a post_load
    slip) stops start-up with one ConfigError naming the instance and the plugin."""

    class Slipping(Schema):
        greeting = fields.String(load_default="hi")

        @post_load
        def _build(self, data: dict[str, Any], **kwargs: Any) -> Any:
            return data["missing"]

    class Slips(Binding):
        name = "slips"
        ConfigSchema = Slipping

    plugin = types.SimpleNamespace(register_bindings=hookimpl(lambda: [Slips]))
    config = make_config({"bindings": {"s": {"type": "slips"}}, "defaults": {"ttt": "s"}})
    pattern = r"bindings\.s: the 'slips' binding \(plugin 'sl'\) cannot load its settings: KeyError"
    with pytest.raises(ConfigError, match=pattern):
        create_app(config, load_plugins(extra={"sl": plugin}))


@pytest.mark.parametrize("attr", ["ParrotBinding", "register_bindings", "X"])
def test_an_entry_point_naming_no_hooks_is_recorded(
    site: Path, monkeypatch: pytest.MonkeyPatch, attr: str
) -> None:
    """An entry point that names the Binding class, the hook function itself, or any object
    without @hookimpl functions registered nothing and was listed 'ok': it is a plugin error
    that says what the entry point names and what it should name."""
    monkeypatch.delenv("LOLLMS_STRICT_PLUGINS", raising=False)
    source = GOOD_PLUGIN + "X = object()\n"
    install_fake_distribution(site, "lollms-aim", "aim", f"fakeplug_aim_{attr}", source, attr)
    plugins = load_plugins()
    error = plugins.errors.get("aim", "")
    assert "implements no lollms_server hook" in error, plugins.errors
    assert "point the entry point at the module" in error, error


def test_misspelt_hook_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A `@hookimpl` whose name is no hook (`register_binding`) would never be called: the
    plugin is recorded broken, naming the hook and the real ones, instead of loading 'ok'."""
    monkeypatch.delenv("LOLLMS_STRICT_PLUGINS", raising=False)
    typo = types.SimpleNamespace(register_binding=hookimpl(lambda: []))
    plugins = load_plugins(extra={"typo": typo})
    assert "'register_binding' is not a lollms_server hook" in plugins.errors["typo"]
    assert "register_bindings" in plugins.errors["typo"]


def test_unknown_capability_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt capability (`strem`) would silently never apply: the class is refused,
    naming it and the known ones."""
    monkeypatch.delenv("LOLLMS_STRICT_PLUGINS", raising=False)

    class Typo(Binding):
        name = "typo"
        capabilities = frozenset({"ttt", "strem"})

    odd = types.SimpleNamespace(register_bindings=hookimpl(lambda: [Typo]))
    plugins = load_plugins(extra={"odd": odd})
    assert "unknown capabilities ['strem']" in plugins.errors["odd"]
    assert "typo" not in plugins.binding_classes


@dataclass(frozen=True)
class _Short:
    greeting: str


class _Mismatch(SettingsSchema):
    Settings = _Short
    greeting = fields.String(load_default="hi")
    extra = fields.Integer(load_default=3)


class _NoSettings(SettingsSchema):
    greeting = fields.String(load_default="hi")


BROKEN_SCHEMAS: dict[str, tuple[object, str]] = {
    "not_a_schema": (dict, "ConfigSchema is <class 'dict'>, not a marshmallow Schema"),
    "fields_differ": (_Mismatch, "loads ['extra', 'greeting'] but its Settings _Short has"),
    "no_settings": (_NoSettings, "_NoSettings is a SettingsSchema without a `Settings`"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_SCHEMAS))
async def test_a_broken_config_schema_refuses_the_class(
    case: str, make_client: Any, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ConfigSchema the core cannot load settings with refuses the class at plugin load,
    naming why; the listings and pages still answer (they were 500s for everyone, and an
    instance of the type stopped start-up with a traceback)."""
    monkeypatch.delenv("LOLLMS_STRICT_PLUGINS", raising=False)
    schema, expected = BROKEN_SCHEMAS[case]

    class Careless(Binding):
        name = "careless"
        capabilities = frozenset({"ttt"})
        ConfigSchema = schema  # type: ignore[assignment]

    odd = types.SimpleNamespace(register_bindings=hookimpl(lambda: [Careless]))
    plugins = load_plugins(extra={"odd": odd})
    assert expected in plugins.errors["odd"], plugins.errors
    assert "careless" not in plugins.binding_classes
    client = await make_client(make_config(), plugins=plugins)
    for path in ("/api/v1/list_bindings", "/bindings"):
        assert (await client.get(path)).status == 200, path


async def _page(request: Any) -> Any:
    return None


BAD_HOOK_RESULTS = {
    "register_routes": lambda: web.get("/x", requires("public")(_page)),  # one route, no list
    "extra_template_vars": lambda: ["a"],
    "register_functions": lambda: len,  # one callable, no list
    "register_personalities": lambda: ["not a mapping"],
}


@pytest.mark.parametrize("hook", sorted(BAD_HOOK_RESULTS))
async def test_a_hook_result_of_the_wrong_shape_is_recorded(
    hook: str, make_client: Any, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hook that returns the wrong shape marks its plugin broken, naming the hook and what
    it must return; the server starts and serves (it failed to start with a traceback)."""
    monkeypatch.delenv("LOLLMS_STRICT_PLUGINS", raising=False)
    odd = types.SimpleNamespace(**{hook: hookimpl(BAD_HOOK_RESULTS[hook])})
    client = await make_client(make_config(), plugins=load_plugins(extra={"odd": odd}))
    health = await (await client.get("/api/v1/health")).json()
    assert f"{hook} must return" in health["plugin_errors"]["odd"], health
    assert (await client.get("/")).status == 200


async def test_plugin_routes_answer_a_browser_origin(make_client: Any, make_config: Any) -> None:
    """A plugin's routes are a sub-application (`/-/<plugin>/`): the CORS check read the
    security settings from the sub-application, which has none, so any request there with an
    Origin header (every browser fetch) lost its connection (KeyError in the response hook);
    now it is answered, with the CORS headers of an allowed origin."""
    from aiohttp import web

    from lollms_server.security.auth import requires

    plugin_routes = web.RouteTableDef()

    @plugin_routes.get("/hello")
    @requires("public")
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hi": True})

    extra = types.SimpleNamespace(register_routes=hookimpl(lambda: list(plugin_routes)))
    raw = {
        "bindings": {"echo": {"type": "echo"}},
        "security": {"cors_origins": ["http://ok.example"]},
    }
    client = await make_client(make_config(raw), plugins=load_plugins(extra={"greeter": extra}))
    for origin, allowed in (
        ("http://ok.example", "http://ok.example"),
        ("http://evil.example", None),
    ):
        answer = await client.get("/-/greeter/hello", headers={"Origin": origin})
        assert answer.status == 200 and await answer.json() == {"hi": True}, origin
        assert answer.headers.get("Access-Control-Allow-Origin") == allowed, origin
