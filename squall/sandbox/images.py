"""Building the Docker backend's runtime images, without any registry.

No registry is reachable from a Squall host, so the base image is made here: Debian
``bookworm`` (``--variant=minbase`` plus ``python3``, which is 3.11 there) from the Debian
mirror apt uses, by ``debootstrap``, then ``docker import``. The runtime images are built on
it from the Dockerfiles in ``squall/runtimes/images/<family>-<version>/``, with Squall's own
runtime proxies (and, for Node.js, the Node.js build of the runtimes cache; for python:3.13,
which bookworm lacks, the runtimes cache's CPython 3.13: :mod:`squall.sandbox.imagetree`)
copied in. They
answer OpenWhisk's action protocol on port 8080 (``POST /init``, ``POST /run``), so they
also run under Apache OpenWhisk as ``--docker`` images.

Caching: the debootstrapped root file system is kept as a tar file in
``~/.cache/squall/images`` (``$XDG_CACHE_HOME``), named by a hash of what made it; each
image carries the label :data:`INPUTS_LABEL`, a hash of everything that went into it
(base, Dockerfile, copied files, an interpreter tree's contents), and is rebuilt only when
that hash changes. Running :func:`ensure_images` with an empty cache builds everything (a
few minutes, once); an image whose interpreter the runtimes cache lacks is left out (and
said so by ``main``).

``python -m squall.sandbox.images`` (called by ``./dev`` and the tests) builds what is
missing and prints the images; with ``--platform-base`` it makes the base of Squall's own
image instead (deploy/docker/build.sh): the same Debian with bubblewrap, nftables,
PostgreSQL, NATS and nginx. It uses the ``docker`` and ``debootstrap`` commands.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from squall.config import Settings
from squall.errors import ContainerError
from squall.sandbox.imagetree import copy_relocated, interpreter_root, tree_digest
from squall.sandbox.interpreters import for_settings

if TYPE_CHECKING:
    import aiodocker

log = logging.getLogger(__name__)

SUITE = "bookworm"
INCLUDE = ("python3", "ca-certificates")
#: The platform's own image (deploy/docker/): Squall and what a cluster runs beside it.
PLATFORM_INCLUDE = (
    *INCLUDE,
    "bubblewrap",
    "nftables",
    "postgresql",
    "nats-server",
    "nginx-light",
    "gettext-base",
    "openssl",
)
PLATFORM_REPOSITORY = "squall/platform-base"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
INPUTS_LABEL = "org.squall.inputs"
BASE_REPOSITORY = "squall/base"
BUILD_TIMEOUT_S = 1800


@dataclass(frozen=True)
class RuntimeImage:
    """One kind's image: its tag, Dockerfile directory and the files copied beside it."""

    kind: str
    tag: str
    directory: str
    #: Files of ``squall/runtimes`` copied into the build context, by name in the context.
    files: tuple[tuple[str, str], ...]
    #: The kind's interpreter of the runtimes cache, copied into the context under this
    #: name and relocated for :data:`INTERPRETER_ROOT`/<name> (:mod:`.imagetree`); "" when
    #: the image brings its own (bookworm's python3, the Node.js build of ``files``).
    interpreter: str = ""


RUNTIME_IMAGES: dict[str, RuntimeImage] = {
    "nodejs:20": RuntimeImage(
        "nodejs:20",
        "squall/runtime-nodejs:20",
        "nodejs-20",
        (
            ("proxy.js", "nodejs/proxy.js"),
            ("unzip.js", "nodejs/unzip.js"),
            ("warmup.js", "nodejs/warmup.js"),
        ),
    ),
    "python:3.11": RuntimeImage(
        "python:3.11",
        "squall/runtime-python:3.11",
        "python-3.11",
        (
            ("proxy.py", "python/proxy.py"),
            ("proxy_action.py", "python/proxy_action.py"),
            ("proxy_orphans.py", "python/proxy_orphans.py"),
        ),
    ),
    # CPython 3.13 is not in bookworm: the image carries the runtimes cache's (Debian 13's
    # build on its own loader and C library), the interpreter python:3.13 runs on in the
    # process sandbox too.
    "python:3.13": RuntimeImage(
        "python:3.13",
        "squall/runtime-python:3.13",
        "python-3.13",
        (
            ("proxy.py", "python/proxy.py"),
            ("proxy_action.py", "python/proxy_action.py"),
            ("proxy_orphans.py", "python/proxy_orphans.py"),
        ),
        interpreter="python-3.13",
    ),
}
#: Where an image's relocated interpreter lives (its Dockerfile copies it there).
INTERPRETER_ROOT = "/opt/squall"


async def present_images(docker: aiodocker.Docker, images: Mapping[str, str]) -> dict[str, str]:
    """The entries of ``images`` (kind → tag) whose image ``docker`` has (a backend runs
    only those kinds; the missing ones are logged, with how to build them);
    ContainerError when dockerd cannot say."""
    from aiodocker.exceptions import DockerError  # at use: see squall.sandbox.docker

    found: dict[str, str] = {}
    for kind, tag in images.items():
        try:
            await docker.images.inspect(tag)
        except DockerError as ex:
            if ex.status != 404:
                raise ContainerError(f"cannot inspect the image '{tag}': {ex}") from ex
            continue
        found[kind] = tag
    missing = sorted(f"{k} ({t})" for k, t in images.items() if k not in found)
    if missing:
        log.warning(
            "the Docker backend has no image for %s: those kinds run in the process "
            "sandbox; build the images (`python -m squall.sandbox.images`, or ./dev) "
            "and restart the invoker to run them on Docker",
            ", ".join(missing),
        )
    return found


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "squall" / "images"


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt uses (deb822 ``URIs:`` or a one-line ``deb`` entry)."""
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.M):
            uri = match[1].rstrip("/")
            if uri.startswith("http") and not uri.endswith("-security"):
                return uri
    return DEFAULT_MIRROR


def _run(*args: str) -> str:
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as ex:
        raise ContainerError(f"{args[0]} failed: {ex}") from ex
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-2000:]
        raise ContainerError(f"{' '.join(args[:3])} failed: {tail}")
    return done.stdout


def _label(tag: str) -> str | None:
    """The inputs label of the local image ``tag``, None when there is no such image."""
    done = subprocess.run(
        ["docker", "image", "inspect", "-f", f'{{{{index .Config.Labels "{INPUTS_LABEL}"}}}}', tag],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def base_image(
    mirror: str | None = None,
    include: tuple[str, ...] = INCLUDE,
    repository: str = BASE_REPOSITORY,
) -> str:
    """A Debian base image with the packages ``include`` (imported from a cached
    debootstrap when missing)."""
    mirror = mirror or debian_mirror()
    digest = hashlib.sha256(f"{SUITE} minbase {','.join(include)}".encode()).hexdigest()[:12]
    tag = f"{repository}:{SUITE}-{digest}"
    if _label(tag) == digest:
        return tag
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    rootfs_tar = cache / f"rootfs-{SUITE}-{digest}.tar"
    if not rootfs_tar.exists():
        if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
            raise ContainerError("debootstrap is not installed: apt-get install debootstrap")
        with tempfile.TemporaryDirectory(dir=cache) as work:
            root = Path(work) / "rootfs"
            _run(
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(include)}",
                SUITE,
                str(root),
                mirror,
            )
            shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
            partial = rootfs_tar.with_suffix(".partial")
            _run("tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), ".")
            partial.rename(rootfs_tar)  # only a complete file ever has the final name
    _run(
        "docker",
        "import",
        "--change",
        f"LABEL {INPUTS_LABEL}={digest}",
        "--change",
        "ENV PATH=/usr/local/bin:/usr/bin:/bin",
        str(rootfs_tar),
        tag,
    )
    return tag


def _node_binary() -> Path:
    found = for_settings(Settings.from_env()).get("nodejs:20")
    if found is None:
        raise ContainerError("no Node.js 20 in the runtimes cache: run `squall runtimes install`")
    return Path(found.executable).resolve()


def _context_files(image: RuntimeImage) -> dict[str, Path]:
    runtimes = Path(str(resources.files("squall.runtimes")))
    files = {name: runtimes / source for name, source in image.files}
    files["Dockerfile"] = runtimes / "images" / image.directory / "Dockerfile"
    if image.kind.startswith("nodejs"):
        files["node"] = _node_binary()
    return files


def runtime_image(kind: str, base: str) -> str:
    """The runtime image of ``kind``, built on ``base`` when missing or out of date;
    ContainerError when its interpreter is not in the runtimes cache."""
    image = RUNTIME_IMAGES[kind]
    files = _context_files(image)
    tree = interpreter_root(kind) if image.interpreter else None
    digest = hashlib.sha256(base.encode())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].read_bytes() + b"\0")
    if tree is not None:
        tree_digest(tree, digest)
    inputs = digest.hexdigest()[:16]
    if _label(image.tag) == inputs:
        return image.tag
    with tempfile.TemporaryDirectory() as context:
        for name, source in files.items():
            shutil.copy(source, Path(context) / name)  # with its mode: node is executable
        if tree is not None:
            final = f"{INTERPRETER_ROOT}/{image.interpreter}"
            copy_relocated(tree, Path(context) / image.interpreter, final)
        _run(
            "docker",
            "build",
            "--build-arg",
            f"BASE={base}",
            "--label",
            f"{INPUTS_LABEL}={inputs}",
            "-t",
            image.tag,
            context,
        )
    return image.tag


def buildable_kinds() -> tuple[tuple[str, ...], dict[str, str]]:
    """(the kinds whose image this host can build, kind → why not for the others): an
    image carrying an interpreter of the runtimes cache needs it installed there."""
    kinds: list[str] = []
    missing: dict[str, str] = {}
    for kind, image in RUNTIME_IMAGES.items():
        if image.interpreter:
            try:
                interpreter_root(kind)
            except ContainerError as ex:
                missing[kind] = ex.message
                continue
        kinds.append(kind)
    return tuple(kinds), missing


def ensure_images(kinds: tuple[str, ...] | None = None) -> dict[str, str]:
    """Build what is missing of the base and runtime images of ``kinds`` (None: those of
    :func:`buildable_kinds`); kind → image tag."""
    if kinds is None:
        kinds, _ = buildable_kinds()
    base = base_image()
    return {kind: runtime_image(kind, base) for kind in kinds}


def main() -> int:
    try:
        if sys.argv[1:] == ["--platform-base"]:
            print(base_image(include=PLATFORM_INCLUDE, repository=PLATFORM_REPOSITORY))
            return 0
        kinds, missing = buildable_kinds()
        for kind, reason in missing.items():
            print(f"squall: no runtime image for {kind}: {reason}", file=sys.stderr)
        for kind, tag in ensure_images(kinds).items():
            print(f"{kind}\t{tag}")
    except ContainerError as ex:
        print(f"squall: cannot build the runtime images: {ex}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
