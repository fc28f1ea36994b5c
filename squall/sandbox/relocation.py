"""Relocating an interpreter extracted from another Debian suite's packages: pointing its
programs and libraries at its own loader and library directory in the place it will run.

The suite's C library is newer than the host's, so every program gets the extracted
dynamic loader as its ELF interpreter and every program and shared library the extracted
library directory as its run path (``patchelf``), both as absolute paths of the *final*
directory. Used where such a tree is made (``squall runtimes install``,
:mod:`squall.cli.debian`, for the runtimes cache) and wherever a copy of it goes
(:mod:`squall.sandbox.imagetree`: python:3.13's runtime image; deploy/docker/build.sh:
Squall's own image). Failures are ContainerError (the installer says them as its own).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from squall.errors import ContainerError

#: An ELF file starts with these bytes.
ELF_MAGIC = b"\x7fELF"


def loader_of(root: Path) -> tuple[Path, Path]:
    """The extracted dynamic loader and its library directory, relative to ``root``."""
    found = sorted(root.glob("usr/lib/*/ld-linux*.so.*"))
    if not found:
        raise ContainerError("the Debian packages hold no dynamic loader (add libc6)")
    loader = found[0].relative_to(root)
    return loader, loader.parent


def relocate(root: Path, final: Path, loader: Path, libraries: Path) -> int:
    """Point every ELF program and library under ``root``'s ``usr`` at ``final``'s loader
    and library directory (``patchelf``); the loader and the C library are left as they
    are. Returns how many files were changed."""
    changed = 0
    keep = {root / loader}
    for directory, _, files in os.walk(root / "usr"):
        for name in files:
            path = Path(directory) / name
            if path in keep or path.is_symlink() or name.startswith("libc.so"):
                continue
            with path.open("rb") as file:
                if file.read(4) != ELF_MAGIC:
                    continue
            command = ["patchelf", "--set-rpath", str(final / libraries)]
            if _has_interpreter(path):
                command += ["--set-interpreter", str(final / loader)]
            _patchelf([*command, str(path)], f"relocating {path.relative_to(root)}")
            changed += 1
    return changed


def relocate_tree(root: Path, final: Path) -> int:
    """Point an extracted interpreter (now at ``root``) at ``final`` instead: its programs
    name their loader and libraries by absolute path, so a copy moved elsewhere needs
    this. Returns how many files were changed."""
    loader, libraries = loader_of(root)
    return relocate(root, final, loader, libraries)


def _has_interpreter(path: Path) -> bool:
    done = _patchelf(["patchelf", "--print-interpreter", str(path)], "", check=False)
    return done.returncode == 0


def _patchelf(
    command: list[str], what: str, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    try:
        done = subprocess.run(command, capture_output=True, check=False)
    except OSError as ex:
        raise ContainerError(f"cannot run patchelf: {ex} (apt-get install patchelf)") from ex
    if check and done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ContainerError(f"{what} failed: {' '.join(said)}")
    return done
