"""An interpreter of the runtimes cache carried into a runtime image (python:3.13's).

The kind's interpreter is the one the process sandbox runs: a directory of the runtimes
cache that ``squall runtimes install`` extracted from another Debian suite's packages and
relocated onto its own loader and C library (:mod:`squall.cli.debian`,
:mod:`squall.sandbox.relocation`). Its programs name
that loader and library directory by absolute path, so the copy put into the image's build
context is relocated again for its place in the image (``patchelf``, as
deploy/docker/build.sh does for Squall's own image). Nothing is fetched: it works offline.

:func:`tree_digest` feeds the tree's contents to the image's inputs hash, so a refreshed
interpreter (``squall runtimes install --refresh``: newer security updates) rebuilds the
image, and an unchanged one never does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Protocol

from squall.config import Settings
from squall.errors import ContainerError
from squall.sandbox import relocation
from squall.sandbox.interpreters import for_settings
from squall.sandbox.relocation import relocate_tree

#: Below an extracted interpreter's root: the program (``<root>/usr/bin/python3.13``).
PROGRAM_DEPTH = 3
#: Not part of the interpreter: the stamp ``squall runtimes install`` writes beside what it
#: installed, and the bytecode the interpreter caches next to its modules whenever it runs
#: on the host (it changes with every run, and the image compiles its own).
SKIPPED = frozenset({".squall-installed", "__pycache__"})
#: The sources that make the tree into the image's copy (this module, and the relocation
#: it runs): a change in either changes the copy, so both are inputs of the image.
MAKERS = (Path(__file__), Path(relocation.__file__))


class Digest(Protocol):
    """What :func:`tree_digest` feeds (a ``hashlib`` hash)."""

    def update(self, data: bytes, /) -> None: ...


def interpreter_root(kind: str) -> Path:
    """The runtimes cache directory holding ``kind``'s extracted interpreter."""
    found = for_settings(Settings.from_env()).get(kind)
    if found is None:
        raise ContainerError(
            f"no {kind} interpreter in the runtimes cache: run `squall runtimes install`"
        )
    program = Path(found.executable).resolve()
    root = program.parents[PROGRAM_DEPTH - 1]
    if not (root / "usr").is_dir():
        raise ContainerError(f"{program} is not an interpreter extracted by `squall runtimes`")
    return root


def tree_digest(root: Path, digest: Digest) -> None:
    """Feed every path under ``root`` (sorted), its kind, mode and contents (a symlink's
    target) to ``digest``: the same tree always gives the same bytes. The sources of
    :data:`MAKERS` go first: how the tree is made into the image is an input too."""
    for maker in MAKERS:
        digest.update(maker.name.encode() + b"\0" + maker.read_bytes() + b"\0")
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED)
        for name in sorted(files):
            if name in SKIPPED:
                continue
            path = Path(directory) / name
            relative = str(path.relative_to(root)).encode()
            if path.is_symlink():
                digest.update(b"L" + relative + b"\0" + os.readlink(path).encode() + b"\0")
                continue
            mode = path.stat().st_mode & 0o777
            digest.update(b"F" + relative + b"\0" + oct(mode).encode() + b"\0")
            digest.update(path.read_bytes())
        for name in dirs:  # symlinks to directories are not walked into: record them
            path = Path(directory) / name
            if path.is_symlink():
                relative = str(path.relative_to(root)).encode()
                digest.update(b"L" + relative + b"\0" + os.readlink(path).encode() + b"\0")


def copy_relocated(root: Path, into: Path, final: str) -> None:
    """Copy the interpreter at ``root`` to ``into`` (a build context's directory),
    relocated for ``final``, its place in the image."""
    shutil.copytree(root, into, symlinks=True, ignore=shutil.ignore_patterns(*SKIPPED))
    try:
        relocate_tree(into, Path(final))
    except ContainerError as ex:
        raise ContainerError(f"cannot relocate {root} for the image: {ex.message}") from ex
    _compile_standard_library(root, into, final)


def _compile_standard_library(root: Path, into: Path, final: str) -> None:
    """Write the bytecode of the copy's standard library, as Debian's postinst does for
    the python3 of the base image: a container's root is read-only, so without it every
    cold start would compile each module it imports again (it doubled python:3.13's Docker
    cold start, bench/README.md). The cache's own interpreter compiles (it runs on the
    host; the copy's loader path exists only in the image), recording the image's paths
    in the code objects (tracebacks) and source hashes that are never checked: the
    image's files never change."""
    program = root / "usr" / "bin" / f"python{_version(root)}"
    library = into / "usr" / "lib" / f"python{_version(root)}"
    command = [
        str(program),
        "-I",
        "-m",
        "compileall",
        "-q",
        "-j0",
        "--invalidation-mode",
        "unchecked-hash",
        "-s",
        str(into),
        "-p",
        final,
        str(library),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as ex:
        raise ContainerError(f"cannot compile {library}: {ex}") from ex
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()[-2000:]
        raise ContainerError(f"compiling the standard library of {root} failed: {said}")


def _version(root: Path) -> str:
    """``3.13`` for the tree of ``usr/lib/python3.13``."""
    found = sorted(p.name for p in (root / "usr" / "lib").glob("python3.*") if p.is_dir())
    if not found:
        raise ContainerError(f"{root} holds no usr/lib/python3.*")
    return found[-1].removeprefix("python")
