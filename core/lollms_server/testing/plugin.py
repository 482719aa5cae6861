"""pytest plugin entry point of the contract kit: the `--backend` option and its marker."""

from __future__ import annotations

from typing import Literal

import pytest

BackendMode = Literal["auto", "require"]
CAPABILITY_MARKER = "lollms_capabilities"
KIT_MODULES = (
    "base",
    "boundary",
    "embeddings",
    "fixtures",
    "lifecycle",
    "media",
    "server",
    "suite",
    "text",
    "tokenizer",
)

# The mixins' asserts are the kit's failure messages: have pytest rewrite them like test code.
pytest.register_assert_rewrite(*(f"lollms_server.testing.{name}" for name in KIT_MODULES))


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add `--backend=auto|require`."""
    group = parser.getgroup("lollms-server")
    group.addoption(
        "--backend",
        choices=("auto", "require"),
        default="auto",
        help="require: a contract test whose real backend cannot start fails instead of skipping",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker the contract mixins put on their tests."""
    config.addinivalue_line(
        "markers",
        f"{CAPABILITY_MARKER}(*names): the binding capabilities a contract test needs; "
        "the test skips when the binding class does not declare them",
    )


def backend_mode_of(config: pytest.Config) -> BackendMode:
    """The `--backend` value of a pytest run (`auto` when the option is unknown)."""
    value = config.getoption("--backend", default="auto")
    return "require" if value == "require" else "auto"


@pytest.fixture
def backend_mode(request: pytest.FixtureRequest) -> BackendMode:
    """`auto` (skip when a real backend is missing) or `require` (fail instead)."""
    return backend_mode_of(request.config)
