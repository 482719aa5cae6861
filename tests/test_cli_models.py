"""`lollms-server models add` as a user runs it: a real process on real files and wheels."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lollms_server.gguf_header import read_header

COMMAND = [sys.executable, "-m", "lollms_server.cli"]


def gguf_bytes(architecture: str = "llama") -> bytes:
    """A small GGUF v3 file: metadata only (no tensors), as the header reader sees a model."""

    def string(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    items = [
        string("general.architecture") + struct.pack("<I", 8) + string(architecture),
        string("general.name") + struct.pack("<I", 8) + string("Tiny Test"),
        string(f"{architecture}.context_length") + struct.pack("<II", 4, 2048),
    ]
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(items)) + b"".join(items)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
    clean["LOLLMS_DATA_DIR"] = str(tmp_path / "data")
    return clean


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Where the llamacpp binding looks by default: <data dir>/models/ttt."""
    return tmp_path / "data" / "models" / "ttt"


def add(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "models", "add", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_adds_a_gguf_file(env: dict[str, str], folder: Path, tmp_path: Path) -> None:
    source = tmp_path / "Tiny-Q8_0.gguf"
    source.write_bytes(gguf_bytes())
    done = add(env, str(source))
    assert done.returncode == 0, done.stderr
    assert "added model 'Tiny-Q8_0' (llama" in done.stdout
    assert (folder / "Tiny-Q8_0.gguf").read_bytes() == source.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["Tiny-Q8_0.gguf"]
    renamed = add(env, str(source), "--name", "other")
    assert renamed.returncode == 0, renamed.stderr
    assert read_header(folder / "other.gguf").get("general.name") == "Tiny Test"


def test_extracts_from_a_wheel_without_installing_it(
    env: dict[str, str], folder: Path, tmp_path: Path
) -> None:
    source = wheel(
        tmp_path / "llm_tiny-0.1-py3-none-any.whl",
        {
            "llm_tiny/__init__.py": b"raise SystemExit('never imported')\n",
            "llm_tiny/Tiny-Model.Q4_1.gguf": gguf_bytes("qwen2"),
            "llm_tiny-0.1.dist-info/entry_points.txt": b"[llm]\ntiny = llm_tiny\n",
        },
    )
    done = add(env, str(source))
    assert done.returncode == 0, done.stderr
    assert "added model 'Tiny-Model.Q4_1' (qwen2" in done.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["Tiny-Model.Q4_1.gguf"]
    assert read_header(folder / "Tiny-Model.Q4_1.gguf").architecture == "qwen2"
    again = add(env, str(source))
    assert again.returncode == 1
    assert "exists; use --force" in again.stderr
    assert add(env, str(source), "--force").returncode == 0


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ({"pkg/readme.txt": b"hello"}, "holds no .gguf file"),
        ({"pkg/fake.gguf": b"not a model at all"}, "is not a readable GGUF model file"),
        ({"pkg/cut.gguf": gguf_bytes()[:40]}, "is not a readable GGUF model file"),
    ],
)
def test_refuses_a_wheel_without_a_good_gguf(
    env: dict[str, str], folder: Path, tmp_path: Path, members: dict[str, bytes], expected: str
) -> None:
    done = add(env, str(wheel(tmp_path / "x-1-py3-none-any.whl", members)))
    assert done.returncode == 2
    assert expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # one line, no traceback
    assert not folder.exists() or list(folder.iterdir()) == []  # nothing left behind


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"#!/bin/sh\necho hi\n", "is neither a GGUF model file nor a wheel"),
        (b"", "is neither a GGUF model file nor a wheel"),
        (b"GGUF", "is not a readable GGUF model file: truncated"),
        (gguf_bytes()[:60], "is not a readable GGUF model file: truncated"),
        (b"GGUF" + struct.pack("<I", 9) + bytes(16), "unsupported GGUF version 9"),
    ],
)
def test_refuses_what_is_not_a_gguf_model(
    env: dict[str, str], folder: Path, tmp_path: Path, content: bytes, expected: str
) -> None:
    source = tmp_path / "model.gguf"
    source.write_bytes(content)
    done = add(env, str(source))
    assert done.returncode == 2
    assert expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not folder.exists() or list(folder.iterdir()) == []


def test_refuses_bad_names_and_missing_files(
    env: dict[str, str], folder: Path, tmp_path: Path
) -> None:
    source = tmp_path / "m.gguf"
    source.write_bytes(gguf_bytes())
    for name in ("../escape", "a/b", ".hidden", ""):
        done = add(env, str(source), "--name", name)
        assert done.returncode == 2, name
        assert "--name" in done.stderr and "Traceback" not in done.stderr
    missing = add(env, str(tmp_path / "nope.gguf"))
    assert missing.returncode == 2
    assert "is not a file" in missing.stderr
    several = wheel(tmp_path / "two.whl", {"a.gguf": gguf_bytes(), "b.gguf": gguf_bytes()})
    done = add(env, str(several), "--name", "one")
    assert done.returncode == 2 and "--name needs one model" in done.stderr
    assert not folder.exists() or list(folder.iterdir()) == []
    assert add(env, str(several)).returncode == 0
    assert sorted(p.name for p in folder.iterdir()) == ["a.gguf", "b.gguf"]
