"""The inputs hashes of Squall's image (squall/sandbox/platformimage.py, used by
deploy/docker/build.sh to skip a rebuild): any change to what goes into the image changes
its hash, and what does not go in leaves it alone; the deps image's hash changes with what
goes into that image only (not squall/, not the rest of pyproject.toml), so a change in
squall/ rebuilds the thin last layer alone. On temporary copies, never the repository."""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from squall.sandbox.platformimage import (
    REPO_INPUTS,
    RUNTIME_PARTS,
    deps_hash,
    inputs_hash,
    requirements,
)

REPO = Path(__file__).resolve().parents[3]


def _fake_wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(a repository with every REPO_INPUTS entry, a runtimes cache, a wheel), copies."""
    repo, cache = tmp_path / "repo", tmp_path / "cache"
    for relative in REPO_INPUTS:
        source, target = REPO / relative, repo / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True)
        else:
            shutil.copy2(source, target)
    for part in RUNTIME_PARTS:
        (cache / part / "lib").mkdir(parents=True)
        (cache / part / "lib" / "marker.txt").write_text(part)
        os.symlink("lib/marker.txt", cache / part / "link")
    wheel = _fake_wheel(tmp_path / "squall-0.1.0-py3-none-any.whl", {"squall/a.py": b"A = 1\n"})
    return repo, cache, wheel


def _edit(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\n# changed\n")


def _retarget(link: Path, target: str) -> None:
    link.unlink()
    link.symlink_to(target)


def test_the_hash_is_stable(inputs: tuple[Path, Path, Path]) -> None:
    repo, cache, wheel = inputs
    first = inputs_hash(repo, cache, "sha256:b", wheel)
    assert inputs_hash(repo, cache, "sha256:b", wheel) == first


def _add_dependency(repo: Path) -> None:
    pyproject = repo / "pyproject.toml"
    text = pyproject.read_text()
    assert '  "aiodocker>=0.24",\n' in text
    pyproject.write_text(text.replace('  "aiodocker>=0.24",\n', '  "aiodocker>=0.24",\n  "six",\n'))


def test_the_requirements_are_pyprojects_dependencies(inputs: tuple[Path, Path, Path]) -> None:
    repo, _, _ = inputs
    found = requirements(repo)
    assert "starlette>=0.40" in found and "psycopg[binary,pool]>=3.3,<3.4" in found
    assert not any(r.startswith(("pytest", "mypy")) for r in found)  # the dev extra's
    _add_dependency(repo)
    assert requirements(repo) == [*found, "six"]


@pytest.mark.parametrize(
    "change",
    [
        lambda repo, cache: _edit(repo / "deploy/docker/Dockerfile.deps"),
        lambda repo, cache: _edit(repo / "deploy/docker/build.sh"),
        lambda repo, cache: _edit(repo / "constraints.txt"),
        lambda repo, cache: _add_dependency(repo),
        lambda repo, cache: _edit(repo / "deploy/docker/bin/squall"),
        lambda repo, cache: (repo / "deploy/docker/bin/squall").chmod(0o644),
        lambda repo, cache: _edit(repo / "deploy/nginx/squall.conf.template"),
        lambda repo, cache: (repo / "deploy/nginx/extra.conf").write_text("x"),  # cp -a copies it
        # the runtimes cache: a touch (what a reinstall or an edit in place does), a new
        # file, a symlink's new target, an optional part missing
        lambda repo, cache: os.utime(cache / "node-20/lib/marker.txt", ns=(1, 1)),
        lambda repo, cache: (cache / "nodejs-libraries/lib/new.js").write_text(""),
        lambda repo, cache: _retarget(cache / "python3.11-libraries/link", "lib"),
        lambda repo, cache: shutil.rmtree(cache / "python-3.13"),
        lambda repo, cache: os.utime(cache / "python3.13-libraries/lib/marker.txt", ns=(1, 1)),
    ],
    ids=[
        "Dockerfile.deps",
        "build.sh",
        "constraints",
        "pyproject-dependency",
        "bin",
        "bin-mode",
        "nginx",
        "nginx-new-file",
        "node-20-touched",
        "nodejs-libraries-new-file",
        "python3.11-libraries-symlink",
        "python-3.13-missing",
        "python3.13-libraries-touched",
    ],
)
def test_a_change_to_a_deps_input_changes_both_hashes(
    inputs: tuple[Path, Path, Path], change: Callable[[Path, Path], object]
) -> None:
    repo, cache, wheel = inputs
    before = inputs_hash(repo, cache, "sha256:b", wheel)
    deps_before = deps_hash(repo, cache, "sha256:b")
    change(repo, cache)
    assert deps_hash(repo, cache, "sha256:b") != deps_before
    assert inputs_hash(repo, cache, "sha256:b", wheel) != before


@pytest.mark.parametrize(
    "change",
    [
        lambda repo: _edit(repo / "deploy/docker/Dockerfile"),
        lambda repo: _edit(repo / "pyproject.toml"),  # a comment: not the dependencies
    ],
    ids=["Dockerfile", "pyproject-elsewhere"],
)
def test_a_change_to_the_last_layers_inputs_leaves_the_deps_image(
    inputs: tuple[Path, Path, Path], change: Callable[[Path], object]
) -> None:
    repo, cache, wheel = inputs
    before = inputs_hash(repo, cache, "sha256:b", wheel)
    deps_before = deps_hash(repo, cache, "sha256:b")
    change(repo)
    assert deps_hash(repo, cache, "sha256:b") == deps_before
    assert inputs_hash(repo, cache, "sha256:b", wheel) != before


def test_the_base_image_and_the_wheel_are_inputs(
    inputs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    repo, cache, wheel = inputs
    before = inputs_hash(repo, cache, "sha256:b", wheel)
    assert inputs_hash(repo, cache, "sha256:other", wheel) != before
    assert deps_hash(repo, cache, "sha256:other") != deps_hash(repo, cache, "sha256:b")
    # the deps hash given (as main() does) or computed: the same
    deps = deps_hash(repo, cache, "sha256:b")
    assert inputs_hash(repo, cache, "sha256:b", wheel, deps) == before
    # a wheel with other contents: a new image, on the same deps image (not an input)
    other = _fake_wheel(tmp_path / "other.whl", {"squall/a.py": b"A = 2\n"})
    assert inputs_hash(repo, cache, "sha256:b", other) != before
    # the same members again (a rebuilt wheel has new zip timestamps): the same hash
    again = _fake_wheel(tmp_path / "again.whl", {"squall/a.py": b"A = 1\n"})
    assert inputs_hash(repo, cache, "sha256:b", again) == before


def test_bytecode_written_into_the_runtimes_cache_changes_nothing(
    inputs: tuple[Path, Path, Path],
) -> None:
    """Running the cache's python3.13 writes __pycache__ beside its modules (and so changes
    their directory's mtime): no rebuild of either image."""
    repo, cache, wheel = inputs
    before = inputs_hash(repo, cache, "sha256:b", wheel)
    deps_before = deps_hash(repo, cache, "sha256:b")
    for part in ("python-3.13", "python3.13-libraries"):
        lib = cache / part / "lib"
        (lib / "__pycache__").mkdir()
        (lib / "__pycache__" / "marker.cpython-313.pyc").write_bytes(b"\0")
        os.utime(lib, ns=(1, 1))
    assert deps_hash(repo, cache, "sha256:b") == deps_before
    assert inputs_hash(repo, cache, "sha256:b", wheel) == before
    # while a module of the same directory touched is a change
    os.utime(cache / "python-3.13/lib/marker.txt", ns=(1, 1))
    assert deps_hash(repo, cache, "sha256:b") != deps_before
