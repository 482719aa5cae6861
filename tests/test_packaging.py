"""Every package ships `py.typed` in its wheel, so type checkers read the plugins' own types."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml"))
BUILD = "import sys; from hatchling.build import build_wheel; print(build_wheel(sys.argv[1]))"


@pytest.mark.parametrize("project", [ROOT, *PLUGINS], ids=lambda p: p.name)
def test_wheel_ships_py_typed(project: Path, tmp_path: Path) -> None:
    """The built wheel holds `<package>/py.typed` next to the package's modules."""
    built = subprocess.run(
        [sys.executable, "-c", BUILD, str(tmp_path)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = tmp_path / built.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    packages = {name.split("/")[0] for name in names if name.endswith("/__init__.py")}
    assert packages, names
    for package in packages:
        assert f"{package}/py.typed" in names, f"{wheel.name} lacks {package}/py.typed"
