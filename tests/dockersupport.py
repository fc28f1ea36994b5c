"""Docker for the tests: a daemon that answers, Squall's runtime images, a tiny custom image.

:func:`docker_ready` makes sure a dockerd answers (starting one the safe way, see
:mod:`squall.sandbox.dockerd`) and that the runtime images are built (cached: a rebuild only
when their inputs change); it returns None, or what is missing. :func:`tiny_image` builds
``squall-test/tiny`` from ``tests/fixtures/tiny.c``: a static C program, alone in a
``FROM scratch`` image, that answers OpenWhisk's ``/init`` and ``/run`` on port 8080 with
no runtime of Squall's inside — the shape of any custom (blackbox) image.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from squall.errors import ContainerError
from squall.sandbox.dockerd import DockerUnavailable, ensure_dockerd
from squall.sandbox.images import ensure_images

TINY_SOURCE = Path(__file__).parent / "fixtures" / "tiny.c"


@functools.cache
def docker_ready() -> str | None:
    """None when dockerd answers and the runtime images exist, else why not."""
    try:
        ensure_dockerd()
    except DockerUnavailable as ex:
        return str(ex)
    try:
        ensure_images()
    except ContainerError as ex:
        return f"the runtime images cannot be built: {ex.message}"
    return None


@functools.cache
def tiny_image() -> str:
    """The tag of the tiny custom image (built when missing)."""
    source = TINY_SOURCE.read_bytes()
    tag = f"squall-test/tiny:{hashlib.sha256(source).hexdigest()[:12]}"
    present = subprocess.run(
        ["docker", "image", "inspect", tag], capture_output=True, timeout=60, check=False
    )
    if present.returncode == 0:
        return tag
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ContainerError("gcc is needed to build the test image: apt-get install gcc")
    with tempfile.TemporaryDirectory() as context:
        binary = Path(context) / "tiny"
        subprocess.run(
            [gcc, "-static", "-O2", "-o", str(binary), str(TINY_SOURCE)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        (Path(context) / "Dockerfile").write_text(
            'FROM scratch\nCOPY tiny /tiny\nUSER 65534\nCMD ["/tiny"]\n'
        )
        subprocess.run(
            ["docker", "build", "-q", "-t", tag, context],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return tag


REPO = Path(__file__).resolve().parents[1]
PLATFORM_REPOSITORY = "squall/squall"
#: The tag every checkout shared before the tags were made per checkout.
LEGACY_PLATFORM_TAG = f"{PLATFORM_REPOSITORY}:test"
CHECKOUT_LABEL = "org.squall.checkout"  # set by deploy/docker/build.sh


def platform_test_tag(repo: Path = REPO) -> str:
    """The tag of Squall's image that the cluster tests build (deploy/docker/build.sh):
    one per checkout, named by a hash of its path, so that two checkouts testing at once
    never build over each other's image (each on the deps image they share when their
    dependencies are the same, so a second checkout costs the thin last layer)."""
    return f"{PLATFORM_REPOSITORY}:test-{hashlib.sha256(str(repo).encode()).hexdigest()[:12]}"


def prune_platform_test_images(repo: Path = REPO) -> list[str]:
    """Remove the test images of checkouts that are gone (label :data:`CHECKOUT_LABEL`
    naming no directory: CI clones anew each run), and the tag every checkout once
    shared; the tags removed. Docker refuses (and the tag stays) while a container uses
    one; removing a tag removes its image only when no other tag names it."""
    listed = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", PLATFORM_REPOSITORY],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    stale = [LEGACY_PLATFORM_TAG] if LEGACY_PLATFORM_TAG in listed else []
    prefix = f"{PLATFORM_REPOSITORY}:test-"
    for tag in listed:
        if not tag.startswith(prefix) or tag == platform_test_tag(repo):
            continue
        checkout = subprocess.run(
            [
                "docker",
                "image",
                "inspect",
                "-f",
                f'{{{{index .Config.Labels "{CHECKOUT_LABEL}"}}}}',
                tag,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout.strip()
        if checkout.startswith("/") and not Path(checkout).is_dir():
            stale.append(tag)
    removed = []
    for tag in stale:
        done = subprocess.run(
            ["docker", "image", "rm", tag], capture_output=True, timeout=300, check=False
        )
        if done.returncode == 0:
            removed.append(tag)
    return removed
