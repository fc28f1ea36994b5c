"""The inputs hashes of Squall's own image (deploy/docker/build.sh), so that a rebuild with
nothing changed is skipped, and a change in squall/ alone rebuilds only a thin last layer.

The image is made in two steps. The *deps image* (deploy/docker/Dockerfile.deps: the base,
the site-packages of Squall's dependencies, the runtimes cache parts, nginx's templates,
bin/) is tagged ``squall/squall-deps:<deps hash>`` (:func:`deps_hash`) and built only when
no image has that tag. The *platform image* (deploy/docker/Dockerfile) is ``FROM`` it plus
the Squall wheel installed without dependencies: a few MB, built in seconds. build.sh labels
it with :data:`~squall.sandbox.images.INPUTS_LABEL` set to :func:`inputs_hash`, and builds
it only when the tag's label differs (as the runtime images of :mod:`squall.sandbox.images`
do). A stale image must never hide a change, so the hashes cover everything the images are
made from:

- Squall as packaged (the platform image only): every member of the wheel build.sh has just
  built (names and contents, not the zip's timestamps). That is exactly what setuptools
  puts in the image, ignored files it packages included (the UI's vendor/), and nothing it
  leaves out (``__pycache__``, mypyc's ``.so``, untracked scratch files), which would only
  cause needless rebuilds. pyproject.toml is hashed whole there too.
- The dependencies (the deps image): pyproject.toml's ``[project] dependencies`` (the
  requirements build.sh hands pip, :func:`requirements`) and constraints.txt (the versions
  pip installs), so an edit elsewhere in pyproject.toml (a linter's setting) rebuilds only
  the thin layer.
- deploy/docker/ (both Dockerfiles, build.sh, bin/) and deploy/nginx: contents, every file
  (cp -a copies untracked ones into the image too). All of them are inputs of the deps
  image, and so of the platform image, whose hash includes the deps hash.
- The base image's id (a re-imported base is a new input), and ``patchelf --version``,
  which relocates python:3.13.
- The runtimes cache parts build.sh copies: a listing of every path with its kind, mode,
  size, mtime (ns) and symlink target, not their contents (370 MB, ~21k files: reading
  them would cost seconds). That is enough: ``squall runtimes install`` writes a part
  afresh (new mtimes) whenever it changes it, an edit in place changes the mtime, and
  ``cp -a`` copies those same mtimes into the image; only a change that forges the old
  size and mtime could go unseen. A part that is missing (python:3.13 is optional) is
  recorded as such. Bytecode caches (``__pycache__``) and directories' mtimes are left
  out: running the cache's python3.13 writes them, and they change no code (:func:`_listing`).

``python -m squall.sandbox.platformimage REPO CACHE BASE_ID WHEEL`` prints the deps hash
and the platform image's hash on one line; ``python -m squall.sandbox.platformimage
--requirements REPO`` prints the dependencies, one a line (a pip requirements file).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hashlib import _Hash as Digest

#: Bumped when the way the images are made changes in a way the inputs below do not show.
SCHEME = b"squall-platform-image 2\0"
DEPS_SCHEME = b"squall-platform-deps 1\0"
#: The deps image's repository; its tag is the deps hash (build.sh keeps those images name).
DEPS_REPOSITORY = "squall/squall-deps"
#: Files and directories of the repository copied (or used) as they are by the deps image.
DEPS_INPUTS = (
    "constraints.txt",
    "deploy/docker/Dockerfile.deps",
    "deploy/docker/build.sh",
    "deploy/docker/bin",
    "deploy/nginx",
)
#: ... and those the platform image adds: the thin last layer's recipe, and pyproject.toml
#: whole (the wheel's metadata comes from it).
PLATFORM_INPUTS = ("pyproject.toml", "deploy/docker/Dockerfile")
#: Every file and directory of the repository either image is made from.
REPO_INPUTS = (*PLATFORM_INPUTS, *DEPS_INPUTS)
#: The runtimes cache's parts build.sh copies into the image.
RUNTIME_PARTS = (
    "node-20",
    "nodejs-libraries",
    "python3.11-libraries",
    "python-3.13",
    "python3.13-libraries",
)


def _walk(root: Path, prune: frozenset[str] = frozenset()) -> list[Path]:
    """Every path under ``root`` (itself included), sorted, but directories named in
    ``prune`` and what they hold; symlinks are not followed."""
    found = [root]
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in prune)
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
    """Feed ``path``'s tree by names, kinds, modes, sizes, mtimes and symlink targets.

    Bytecode caches are left out, and so are directories' sizes and mtimes: running the
    cache's python3.13 (tests, benchmarks) writes ``__pycache__`` into it, which must not
    rebuild the 1.1 GB deps image. A pyc is no input: Python uses it only while it matches
    its source's mtime and size, so the image runs the same code with or without it (cp -a
    copies those present). An entry added, removed or renamed in a directory is seen by
    its own name, so the directory's mtime adds nothing."""
    if not path.is_dir():
        digest.update(b"-" + relative.encode() + b"\0")
        return
    for item in _walk(path, prune=frozenset({"__pycache__"})):
        name = (relative + "/" + str(item.relative_to(path))).encode()
        st = item.lstat()
        target = os.readlink(item).encode() if item.is_symlink() else b""
        size, mtime = (0, 0) if stat.S_ISDIR(st.st_mode) else (st.st_size, st.st_mtime_ns)
        line = b"%s\0%o\0%d\0%d\0%s\0" % (name, st.st_mode, size, mtime, target)
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


def requirements(repo: Path) -> list[str]:
    """pyproject.toml's ``[project] dependencies``: what the wheel requires, so pip resolves
    the same set from them (with constraints.txt) as from the wheel itself."""
    with (repo / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    found = project.get("dependencies", [])
    if not isinstance(found, list) or not all(isinstance(r, str) for r in found):
        raise ValueError("pyproject.toml: [project] dependencies is not a list of strings")
    return found


def deps_hash(repo: Path, cache: Path, base_id: str) -> str:
    """The hash of everything the deps image is made from (see the module's docstring)."""
    digest = hashlib.sha256(DEPS_SCHEME)
    digest.update(b"base\0" + base_id.encode() + b"\0patchelf\0" + _patchelf() + b"\0")
    for requirement in requirements(repo):
        digest.update(b"R" + requirement.encode() + b"\0")
    for relative in DEPS_INPUTS:
        _contents(repo / relative, relative, digest)
    for part in RUNTIME_PARTS:
        _listing(cache / part, part, digest)
    return digest.hexdigest()[:16]


def inputs_hash(repo: Path, cache: Path, base_id: str, wheel: Path, deps: str | None = None) -> str:
    """The hash of everything Squall's image is made from (see the module's docstring):
    the deps hash (``deps``, when the caller has it already), the wheel, PLATFORM_INPUTS."""
    digest = hashlib.sha256(SCHEME)
    digest.update(b"deps\0" + (deps or deps_hash(repo, cache, base_id)).encode() + b"\0")
    _wheel(wheel, digest)
    for relative in PLATFORM_INPUTS:
        _contents(repo / relative, relative, digest)
    return digest.hexdigest()[:16]


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--requirements":
        print("\n".join(requirements(Path(argv[1]))))
        return 0
    if len(argv) != 4:
        print(
            "usage: python -m squall.sandbox.platformimage REPO CACHE BASE_ID WHEEL\n"
            "       python -m squall.sandbox.platformimage --requirements REPO",
            file=sys.stderr,
        )
        return 2
    repo, cache, base_id, wheel = Path(argv[0]), Path(argv[1]), argv[2], Path(argv[3])
    deps = deps_hash(repo, cache, base_id)
    print(deps, inputs_hash(repo, cache, base_id, wheel, deps))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
