"""The Docker backend connects to dockerd at start only when it has something to do there.

An invoker whose Docker backend serves custom images only, and whose directory no earlier
invoker left containers in, connects on its first ``create`` (so a server that never runs
a custom image never loads the Docker client); one that may have leftovers, or that runs
the built-in kinds, connects in ``start`` as before. A real dockerd, the tiny custom image.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from _required import unavailable
from dockersupport import docker_ready, tiny_image

from squall.sandbox.backends import BackendRouter
from squall.sandbox.docker import DockerContainerFactory
from squall.sandbox.images import RUNTIME_IMAGES
from squall.sandbox.process import ProcessContainerFactory

API_HOST = "https://api.invalid"
MARK = ".docker-containers"


@pytest.fixture
def docker() -> Iterator[None]:
    problem = docker_ready()
    if problem is not None:
        unavailable(f"Docker backend: {problem}")
    yield


async def test_a_custom_image_backend_connects_on_its_first_container(
    anyio_backend: str, docker: None, tmp_path: Path
) -> None:
    # Given a custom-image-only backend on a directory no invoker used
    factory = DockerContainerFactory(tmp_path, API_HOST)
    try:
        # When it starts / Then it holds the directory but has not connected
        await factory.start()
        assert not factory.connected
        assert (tmp_path / ".docker.lock").exists() and not (tmp_path / MARK).exists()
        # When it creates a container of a custom image
        container = await factory.create(f"blackbox:{tiny_image()}", 128, network=False)
        # Then it connected, and the directory says containers of it may exist
        assert factory.connected and (tmp_path / MARK).exists()
        await container.destroy()
    finally:
        await factory.close()
    # And a close that left no container behind removes the mark
    assert not (tmp_path / MARK).exists()


async def test_a_backend_that_may_have_leftovers_connects_at_start(
    anyio_backend: str, docker: None, tmp_path: Path
) -> None:
    # Given a directory whose last invoker did not close (its mark is still there)
    (tmp_path / MARK).touch()
    factory = DockerContainerFactory(tmp_path, API_HOST)
    try:
        # When a new backend starts on it / Then it connects and looks for leftovers
        await factory.start()
        assert factory.connected and factory.leftovers == 0
    finally:
        await factory.close()
    # And, none being left, the mark goes
    assert not (tmp_path / MARK).exists()


async def test_a_backend_of_the_built_in_kinds_connects_at_start(
    anyio_backend: str, docker: None, tmp_path: Path
) -> None:
    # Given a backend that runs the built-in kinds (it must fail at start without dockerd)
    factory = DockerContainerFactory(tmp_path, API_HOST, builtin=True)
    try:
        # When it starts / Then it connected
        await factory.start()
        assert factory.connected
    finally:
        await factory.close()


async def test_a_built_in_kind_whose_image_is_missing_stays_with_the_process_sandbox(
    anyio_backend: str, docker: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a backend of the built-in kinds on a host that has python:3.11's image but
    # not python:3.13's (an image name that does not exist stands for it)
    present = RUNTIME_IMAGES["python:3.11"].tag
    absent = f"squall-test/absent:{secrets.token_hex(6)}"
    images = {"python:3.11": present, "python:3.13": absent}
    factory = DockerContainerFactory(tmp_path / "docker", API_HOST, builtin=True, images=images)
    process = ProcessContainerFactory(tmp_path / "process", API_HOST, zygote_spares=0)
    router = BackendRouter([factory, process], process.runtimes)
    try:
        # When it starts
        with caplog.at_level(logging.WARNING, logger="squall.sandbox.docker"):
            await router.start()
        # Then it claims only the kind whose image is there
        assert factory.supports("python:3.11")
        assert not factory.supports("python:3.13")
        # And the other goes to the process sandbox, as when Docker does not run built-ins
        assert router.factory_for("python:3.11") is factory
        assert router.factory_for("python:3.13") is process
        # And the operator is told which image is missing and how to build it
        said = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
        assert f"python:3.13 ({absent})" in said and present not in said
        assert "python -m squall.sandbox.images" in said
    finally:
        await router.close()
