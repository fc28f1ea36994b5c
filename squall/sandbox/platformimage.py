"""The inputs hash of Squall's own image (deploy/docker/build.sh), so that a rebuild with
nothing changed is skipped.

build.sh labels the image with :data:`~squall.sandbox.images.INPUTS_LABEL` set to
:func:`inputs_hash`, and builds only when the tag's label differs (as the runtime images
of :mod:`squall.sandbox.images` do). A stale image must never hide a change, so the hash
covers everything the image is made from:

- Squall as packaged: every member of the wheel build.sh has just built (names and
  contents, not the zip's timestamps). That is exactly what setuptools puts in the image,
  ignored files it packages included (the UI's vendor/), and nothing it leaves out
  (``__pycache__``, mypyc's ``.so``, untracked scratch files), which would only cause
  needless rebuilds. pyproject.toml and constraints.txt (the dependency versions
  pip installs beside it) are hashed too.
- deploy/docker/Dockerfile, build.sh, deploy/docker/bin and deploy/nginx: contents, every
  file (cp -a copies untracked ones into the image too).
- The base image's id (a re-imported base is a new input), and ``patchelf --version``,
  which relocates python:3.13.
- The runtimes cache parts build.sh copies: a listing of every path with its kind, mode,
  size, mtime (ns) and symlink target, not their contents (370 MB, ~21k files: reading
  them would cost seconds). That is enough: ``squall runtimes install`` writes a part
  afresh (new mtimes) whenever it changes it, an edit in place changes the mtime, and
  ``cp -a`` copies those same mtimes into the image; only a change that forges the old
  size and mtime could go unseen. A part that is missing (python:3.13 is optional) is
  recorded as such.

``python -m squall.sandbox.platformimage REPO CACHE BASE WHEEL`` prints the hash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hashlib import _Hash as Digest

#: Bumped when the way the image is made changes in a way the inputs below do not show.
SCHEME = b"squall-platform-image 1\0"
#: Files and directories of the repository copied (or used) as they are.
REPO_INPUTS = (
    "pyproject.toml",
    "constraints.txt",
    "deploy/docker/Dockerfile",
    "deploy/docker/build.sh",
    "deploy/docker/bin",
    "deploy/nginx",
)
#: The runtimes cache's parts build.sh copies into the image.
RUNTIME_PARTS = (
    "node-20",
    "nodejs-libraries",
    "python3.11-libraries",
    "python-3.13",
    "python3.13-libraries",
)


def _walk(root: Path) -> list[Path]:
    """Every path under ``root`` (itself included), sorted; symlinks are not followed."""
    found = [root]
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        found.extend(Path(directory) / name for name in sorted(dirs + files))
    return sorted(found)


def _contents(path: Path, relative: str, digest: Digest) -> None:
    """Feed ``path`` (a file, or a directory's every file) by contents and mode."""
    if not path.exists() and not path.is_symlink():
        digest.update(b"-" + relative.encode() + b"\0")
        return
    for item in _walk(path):
        name = (relative + "/" + str(item.relative_to(path))).encode()
        if item.is_symlink():
            digest.update(b"L" + name + b"\0" + os.readlink(item).encode() + b"\0")
        elif item.is_dir():
            digest.update(b"D" + name + b"\0")
        else:
            mode = oct(item.stat().st_mode & 0o777).encode()
            data = item.read_bytes()
            digest.update(b"F" + name + b"\0" + mode + b"\0%d\0" % len(data) + data)


def _listing(path: Path, relative: str, digest: Digest) -> None:
    """Feed ``path``'s tree by names, kinds, modes, sizes, mtimes and symlink targets."""
    if not path.is_dir():
        digest.update(b"-" + relative.encode() + b"\0")
        return
    for item in _walk(path):
        name = (relative + "/" + str(item.relative_to(path))).encode()
        st = item.lstat()
        target = os.readlink(item).encode() if item.is_symlink() else b""
        line = b"%s\0%o\0%d\0%d\0%s\0" % (name, st.st_mode, st.st_size, st.st_mtime_ns, target)
        digest.update(line)


def _wheel(wheel: Path, digest: Digest) -> None:
    """Feed the wheel's members by name and contents (its zip timestamps change per build)."""
    with zipfile.ZipFile(wheel) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            data = archive.read(info)
            mode = oct(info.external_attr >> 16).encode()
            digest.update(b"W" + info.filename.encode() + b"\0" + mode + b"\0%d\0" % len(data))
            digest.update(data)


def _patchelf() -> bytes:
    found = shutil.which("patchelf")
    if found is None:
        return b"no patchelf"
    done = subprocess.run([found, "--version"], capture_output=True, timeout=60, check=False)
    return done.stdout.strip()


def inputs_hash(repo: Path, cache: Path, base_id: str, wheel: Path) -> str:
    """The hash of everything Squall's image is made from (see the module's docstring)."""
    digest = hashlib.sha256(SCHEME)
    digest.update(b"base\0" + base_id.encode() + b"\0patchelf\0" + _patchelf() + b"\0")
    _wheel(wheel, digest)
    for relative in REPO_INPUTS:
        _contents(repo / relative, relative, digest)
    for part in RUNTIME_PARTS:
        _listing(cache / part, part, digest)
    return digest.hexdigest()[:16]


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        usage = "usage: python -m squall.sandbox.platformimage REPO CACHE BASE_ID WHEEL"
        print(usage, file=sys.stderr)
        return 2
    repo, cache, base_id, wheel = argv
    print(inputs_hash(Path(repo), Path(cache), base_id, Path(wheel)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
