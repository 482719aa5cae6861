"""Config validation, env overrides and first-run defaults."""

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from lollms_server.config import DEFAULT_CONFIG_TEXT, load_config, parse_config
from lollms_server.errors import ConfigError
from lollms_server.plugins import load_plugins
from lollms_server.registry import build_registry
from lollms_server.request_limits import RequestLimits


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOLLMS_HOST", "LOLLMS_PORT", "LOLLMS_CONFIG", "LOLLMS_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_first_run_writes_commented_defaults_and_data_dir(tmp_path: Path) -> None:
    path = tmp_path / "data" / "lollms.toml"
    config = load_config(path)
    assert path.read_text() == DEFAULT_CONFIG_TEXT
    assert "#" in path.read_text()
    assert (config.host, config.port) == ("127.0.0.1", 9601)
    assert config.bindings["echo"].type == "echo"
    assert config.defaults["ttt"] == "echo"
    config.data_dir = tmp_path / "data"
    from lollms_server.config import prepare_data_dir

    prepare_data_dir(config)
    assert (tmp_path / "data" / "personalities").is_dir()
    assert (tmp_path / "data" / "models" / "tti").is_dir()


def test_default_config_text_is_valid_toml_matching_schema() -> None:
    raw = tomllib.loads(DEFAULT_CONFIG_TEXT)
    config = parse_config(raw)
    assert set(config.defaults) == {"ttt", "tti", "i2i", "tts", "stt", "ttv", "ttm", "audio2audio"}


def test_request_limits_come_from_server_keys_with_the_documented_defaults() -> None:
    defaults = parse_config(tomllib.loads(DEFAULT_CONFIG_TEXT)).limits
    assert defaults == RequestLimits()  # the commented defaults are the schema's
    raw = {
        "server": {
            "max_body_mb": 2, "max_text_body_mb": 1, "body_timeout_s": 5, "max_json_values": 10,
            "max_list_items": 3, "max_token_ids": 7, "max_form_fields": 4, "max_form_parts": 2,
            "max_form_field_kb": 0.5,
        }
    }  # fmt: skip
    limits = parse_config(raw).limits
    assert limits == RequestLimits(
        max_body_bytes=2 * 2**20, max_text_body_bytes=2**20, body_timeout_s=5,
        max_json_values=10, max_list_items=3, max_token_ids=7, max_form_fields=4,
        max_form_parts=2, max_form_field_bytes=512,
    )  # fmt: skip
    assert limits.body_limit(media=False) == (2**20, "max_text_body_mb")
    with pytest.raises(ConfigError, match=r"server\.body_timeout_s: got 0"):
        parse_config({"server": {"body_timeout_s": 0}})


def test_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOLLMS_HOST", "0.0.0.0")
    monkeypatch.setenv("LOLLMS_PORT", "9700")
    monkeypatch.setenv("LOLLMS_DATA_DIR", str(tmp_path / "d"))
    config = parse_config({"server": {"host": "127.0.0.1", "port": 1}})
    assert (config.host, config.port, config.data_dir) == ("0.0.0.0", 9700, tmp_path / "d")


def test_env_config_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('[server]\nport = 9999\n[bindings.e]\ntype = "echo"\n')
    monkeypatch.setenv("LOLLMS_CONFIG", str(path))
    monkeypatch.setenv("LOLLMS_DATA_DIR", str(tmp_path / "d"))
    config = load_config()
    assert config.port == 9999 and config.path == path


def test_bad_env_port_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOLLMS_PORT", "http")
    with pytest.raises(ConfigError, match="LOLLMS_PORT: got 'http'"):
        parse_config({})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"server": {"port": "abc"}}, "server.port: got 'abc'; Not a valid integer."),
        ({"server": {"port": 70000}}, "server.port: got 70000"),
        ({"server": {"log_level": "loud"}}, "Must be one of: debug, info, warning, error."),
        ({"server": {"prot": 1}}, "server.prot: unknown key"),
        ({"bindings": {"a/b": {"type": "echo"}}}, "bindings"),
        ({"bindings": {"x": {}}}, "bindings.x.type"),
        ({"defaults": {"txt": "echo"}}, "defaults"),
    ],
)
def test_invalid_config_names_key_value_and_allowed(raw: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert expected in str(info.value)


def test_unknown_binding_type_lists_allowed(tmp_path: Path) -> None:
    config = parse_config(
        {"bindings": {"x": {"type": "nope"}}, "server": {"data_dir": str(tmp_path)}}
    )
    with pytest.raises(ConfigError, match=r"bindings\.x\.type: got 'nope'; allowed: (.*, )?echo\b"):
        build_registry(config, load_plugins())


def test_a_shipped_type_without_its_plugin_says_what_to_install(tmp_path: Path) -> None:
    """The core installed alone, a `llamacpp` instance configured (the README's next step
    forgotten): the error names the plugin to install."""
    plugins = load_plugins()
    core_only = replace(plugins, binding_classes={"echo": plugins.binding_classes["echo"]})
    config = parse_config(
        {"bindings": {"local": {"type": "llamacpp"}}, "server": {"data_dir": str(tmp_path)}}
    )
    with pytest.raises(ConfigError) as info:
        build_registry(config, core_only)
    message = str(info.value)
    assert message.startswith("bindings.local.type: got 'llamacpp'; allowed: echo")
    assert "comes with the plugin lollms-llamacpp: pip install ./plugins/lollms-llamacpp" in message


def test_binding_settings_checked_by_type_schema(tmp_path: Path) -> None:
    raw = {"bindings": {"x": {"type": "echo", "delay_ms": "slow", "colour": 1}}}
    config = parse_config(raw)
    with pytest.raises(ConfigError) as info:
        build_registry(config, load_plugins())
    message = str(info.value)
    assert "bindings.x.delay_ms: got 'slow'; Not a valid integer." in message
    assert "bindings.x.colour: unknown key" in message


def test_defaults_must_name_an_instance() -> None:
    config = parse_config({"bindings": {"e": {"type": "echo"}}, "defaults": {"ttt": "other/m"}})
    with pytest.raises(ConfigError, match=r"defaults\.ttt: got 'other/m'; allowed: .*e"):
        build_registry(config, load_plugins())


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "lollms.toml"
    path.write_text("[server\nport=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
