"""deploy/docker/build.sh skips the build when the image's inputs have not changed: a
second run is a cache hit (the same image id, no docker build), and the image carries the
inputs label and its checkout's path. It builds the tag test_compose.py uses (one per
checkout: dockersupport.platform_test_tag), so the two share one cached image (a cold
build the first time, a minute or two; then seconds). The hash sees squall/ through the
wheel build.sh makes of it (tests/unit/deploy/test_platform_image.py tests the rest of
the hash; this one builds real wheels, ~5 s each). The test images of checkouts that are
gone are pruned."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from _required import unavailable
from dockersupport import (
    CHECKOUT_LABEL,
    docker_ready,
    platform_test_tag,
    prune_platform_test_images,
    tiny_image,
)

from squall.sandbox.images import INPUTS_LABEL
from squall.sandbox.platformimage import inputs_hash

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "deploy" / "docker" / "build.sh"
PRUNE_DEPS = REPO / "deploy" / "docker" / "prune-deps.sh"
DEPS_LABEL = "org.squall.deps"
IMAGE = platform_test_tag()  # test_compose.py's


def _build() -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(BUILD), IMAGE], capture_output=True, text=True, timeout=3600, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == IMAGE
    return done


def _inspect(template: str, image: str = IMAGE) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "-f", template, image],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()


def test_a_second_build_with_no_change_is_a_cache_hit() -> None:
    problem = docker_ready()
    if problem is not None:
        unavailable(f"Docker: {problem}")
    # Given the image built (or already up to date)
    prune_platform_test_images()
    _build()
    image_id = _inspect("{{.Id}}")
    label = _inspect(f'{{{{index .Config.Labels "{INPUTS_LABEL}"}}}}')
    assert len(label) == 16
    assert _inspect(f'{{{{index .Config.Labels "{CHECKOUT_LABEL}"}}}}') == str(REPO)
    # When build.sh runs again with nothing changed
    again = _build()
    # Then it did not build: it says so, and the tag names the same image
    assert f"{IMAGE} is up to date ({INPUTS_LABEL}={label}), not rebuilt" in again.stderr
    assert _inspect("{{.Id}}") == image_id


def _wheel_of(source: Path, into: Path) -> Path:
    """The wheel build.sh makes of ``source`` (pip wheel, as build.sh runs it)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(into), str(source)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = into.glob("squall-*.whl")
    return wheel


def test_the_hash_sees_the_source_tree_as_packaged(tmp_path: Path) -> None:
    """An edited or new module changes the hash; files setuptools does not package
    (bytecode, scratch files, untracked or ignored) do not. On a copy of squall/."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "squall",
        source / "squall",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "vendor"),
    )
    cache = tmp_path / "cache"  # empty: the same listing every time

    def hashed(wheels: str) -> str:
        return inputs_hash(REPO, cache, "sha256:b", _wheel_of(source, tmp_path / wheels))

    first = hashed("w1")
    # Given files that are not packaged added (bytecode, a scratch file): no rebuild
    (source / "squall" / "__pycache__").mkdir(exist_ok=True)
    (source / "squall" / "__pycache__" / "junk.cpython-311.pyc").write_bytes(b"junk")
    (source / "squall" / "notes.txt").write_text("scratch")
    assert hashed("w2") == first
    # Given a module edited and a new (untracked) one: a rebuild
    errors = source / "squall" / "errors.py"
    errors.write_text(errors.read_text() + "\n# changed\n")
    (source / "squall" / "brand_new.py").write_text("X = 1\n")
    assert hashed("w3") != first


def _labelled_image(tag: str, checkout: Path) -> None:
    """A tiny image tagged ``tag``, labelled as built from ``checkout`` (as build.sh does)."""
    subprocess.run(
        ["docker", "build", "-q", "--label", f"{CHECKOUT_LABEL}={checkout}", "-t", tag, "-"],
        input=f"FROM {tiny_image()}\n",
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )


def test_the_test_image_of_a_checkout_that_is_gone_is_pruned(tmp_path: Path) -> None:
    problem = docker_ready()
    if problem is not None:
        unavailable(f"Docker: {problem}")
    # Given the test images of a checkout still there and of one that is gone
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    kept.mkdir()
    for checkout in (kept, gone):
        _labelled_image(platform_test_tag(checkout), checkout)
    try:
        # When the images are pruned
        removed = prune_platform_test_images()
        # Then the gone checkout's image is removed, the other one (and ours) stay
        assert platform_test_tag(gone) in removed
        assert platform_test_tag(kept) not in removed and IMAGE not in removed
        gone_left = subprocess.run(
            ["docker", "image", "inspect", platform_test_tag(gone)],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert gone_left.returncode != 0
        assert _inspect(
            f'{{{{index .Config.Labels "{CHECKOUT_LABEL}"}}}}', platform_test_tag(kept)
        ) == str(kept)
    finally:
        for checkout in (kept, gone):
            subprocess.run(
                ["docker", "image", "rm", platform_test_tag(checkout)],
                capture_output=True,
                timeout=300,
                check=False,
            )


def _docker(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, text=True, timeout=300, check=False
    )


def test_a_deps_image_is_kept_while_an_image_is_built_on_it(tmp_path: Path) -> None:
    """build.sh untags (prune-deps.sh) only the deps images no image names in its
    org.squall.deps label, which deploy/docker/Dockerfile sets: another checkout's deps
    image stays while its images do. Tiny images in a repository of the test's own."""
    problem = docker_ready()
    if problem is not None:
        unavailable(f"Docker: {problem}")
    repository = f"squall-test/deps-{uuid.uuid4().hex[:8]}"
    keep, used, unused = (f"{repository}:{name}" for name in ("keep", "used", "unused"))
    user = f"{repository}-user:1"
    try:
        # Given three deps images (tiny ones, each its own id), and an image built on one
        # of them by the Dockerfile build.sh uses (its last layer: an empty site/ here)
        for tag in (keep, used, unused):
            built = _docker(
                "build", "-q", "--label", f"org.squall.inputs={tag}", "-t", tag, "-",
                stdin=f"FROM {tiny_image()}\n",
            )  # fmt: skip
            assert built.returncode == 0, built.stderr
        (tmp_path / "site").mkdir()
        built = _docker(
            "build", "-q", "--build-arg", f"DEPS={used}", "-t", user,
            "-f", str(REPO / "deploy" / "docker" / "Dockerfile"), str(tmp_path),
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
        assert _inspect(f'{{{{index .Config.Labels "{DEPS_LABEL}"}}}}', user) == used
        # When build.sh's pruning runs after a build on ``keep``
        pruned = subprocess.run(
            [str(PRUNE_DEPS), repository, keep],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert pruned.returncode == 0, pruned.stderr
        # Then the deps image built on, and the one just used, stay; the other is untagged
        assert _docker("image", "inspect", keep).returncode == 0
        assert _docker("image", "inspect", used).returncode == 0
        assert _docker("image", "inspect", unused).returncode != 0
    finally:
        for tag in (user, keep, used, unused):
            _docker("image", "rm", tag)
