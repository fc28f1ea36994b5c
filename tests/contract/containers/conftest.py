"""Fixtures for the ContainerFactory contract suite, run once per backend.

Every test here uses only :mod:`squall.sandbox.contracts` (plus :func:`open_factory` and
:func:`start`, the one step that differs: the Docker backend connects to its daemon and
clears leftovers in ``start``). To add a backend, add it to ``BACKENDS`` and
``open_factory``. The process sandbox needs bubblewrap and cgroups; Docker a dockerd and
the runtime images (tests/dockersupport.py starts and builds them). When they are missing
the tests skip, or fail with ``CI=true``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _required import unavailable
from dockersupport import docker_ready

from squall.errors import ContainerError
from squall.sandbox.contracts import ContainerFactory
from squall.sandbox.docker import DockerContainerFactory
from squall.sandbox.process import ProcessContainerFactory

BACKENDS = ("process", "docker")
API_HOST = "https://api.invalid"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def open_factory(backend: str, workdir: Path) -> ContainerFactory:
    """A factory of ``backend`` on ``workdir`` (not started: see :func:`start`)."""
    if backend == "docker":
        return DockerContainerFactory(workdir, API_HOST, builtin=True)
    return ProcessContainerFactory(workdir, API_HOST, zygote_spares=0)


async def start(factory: ContainerFactory) -> None:
    if isinstance(factory, DockerContainerFactory):
        await factory.start()


def leftovers(factory: ContainerFactory) -> int:
    assert isinstance(factory, DockerContainerFactory | ProcessContainerFactory)
    return factory.leftovers


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    if name == "docker":
        problem = docker_ready()
        if problem is not None:
            unavailable(f"Docker backend: {problem}")
    return name


@pytest.fixture
async def factory(backend: str, tmp_path: Path) -> AsyncIterator[ContainerFactory]:
    try:
        made = open_factory(backend, tmp_path / "containers")
    except ContainerError as ex:
        unavailable(f"the {backend} backend cannot run here: {ex.message}")
    try:
        await start(made)
        yield made
    finally:
        await made.close()
