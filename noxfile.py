"""Test sessions: lint, core tests, and unit/contract tests per plugin under plugins/."""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
PLUGINS = sorted(p.parent.name for p in ROOT.glob("plugins/*/pyproject.toml"))
LINT_PATHS = [
    "core",
    "tests",
    "noxfile.py",
    *(p for p in ("plugins", "bench") if (ROOT / p).is_dir()),
]

nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


@nox.session
def lint(session: nox.Session) -> None:
    """ruff format --check, ruff check, mypy on the core."""
    session.install("-e", ".[lint]")
    session.run("ruff", "format", "--check", *LINT_PATHS)
    session.run("ruff", "check", *LINT_PATHS)
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """The core tests (echo binding, no backend needed)."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests", *session.posargs)


if PLUGINS:

    @nox.session
    @nox.parametrize("plugin", PLUGINS)
    def unit(session: nox.Session, plugin: str) -> None:
        """A plugin's unit tests, in a venv with only the core and that plugin."""
        session.install("-e", ".[test]", "-e", f"plugins/{plugin}[test]")
        session.run("pytest", f"plugins/{plugin}/tests", "-m", "not contract", *session.posargs)

    @nox.session
    @nox.parametrize("plugin", PLUGINS)
    def contract(session: nox.Session, plugin: str) -> None:
        """A plugin's contract tests against its real backend; a backend that can't start fails."""
        session.install("-e", ".[test]", "-e", f"plugins/{plugin}[test]")
        session.run(
            "pytest",
            f"plugins/{plugin}/tests",
            "-m",
            "contract",
            "--backend=require",
            *session.posargs,
        )
