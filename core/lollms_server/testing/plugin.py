"""pytest plugin entry point of the contract kit: the `--backend` option."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add `--backend=auto|require`."""
    group = parser.getgroup("lollms-server")
    group.addoption(
        "--backend",
        choices=("auto", "require"),
        default="auto",
        help="require: a contract test whose real backend cannot start fails instead of skipping",
    )
