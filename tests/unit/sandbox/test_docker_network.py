"""Docker containers get the process sandbox's network: the same link, the same rules.

The Docker backend creates containers with network mode ``none`` and gives them a link
from the invoker's :class:`SandboxNetwork` (tests/unit/sandbox/test_sandbox_network.py has
the targets and the actions); so what a Docker container reaches is exactly what a process
sandbox reaches. Every target is on this machine.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _required import unavailable
from dockersupport import docker_ready
from netsupport import NAME, OutsideHost
from test_sandbox_network import NODE_CONNECT, PY_CONNECT, api_server, run, targets

from squall.sandbox.docker import DockerContainerFactory
from squall.sandbox.dockercontainer import DockerContainer
from squall.sandbox.egress import EgressPolicy
from squall.sandbox.network import SandboxNetwork

__all__ = ["api_server"]  # a fixture, used by name


@pytest.fixture
async def docker_networked(
    anyio_backend: str, tmp_path: Path, outside: OutsideHost, api_server: socket.socket
) -> AsyncIterator[DockerContainerFactory]:
    problem = docker_ready()
    if problem is not None:
        unavailable(f"Docker backend: {problem}")
    port = api_server.getsockname()[1]
    assert outside.resolver is not None
    policy = EgressPolicy(resolvers=(ipaddress.ip_address(outside.resolver),))
    network = SandboxNetwork(policy, ("127.0.0.1", port))
    network.open()  # the process sandbox opens it in an invoker; Docker only borrows it
    factory = DockerContainerFactory(
        tmp_path / "docker", f"http://127.0.0.1:{port}", builtin=True, network=network
    )
    try:
        yield factory
    finally:
        await factory.close()
        network.close()


@pytest.mark.parametrize(
    ("kind", "code"), [("python:3.11", PY_CONNECT), ("nodejs:20", NODE_CONNECT)]
)
async def test_a_docker_action_reaches_the_outside_and_the_api_but_nothing_else(
    docker_networked: DockerContainerFactory,
    outside: OutsideHost,
    api_server: socket.socket,
    kind: str,
    code: str,
) -> None:
    # Given a Docker factory on a network with the default egress rules
    network = docker_networked.network
    assert network is not None and network.block is not None
    gateway = str(network.block.gateway)
    port = api_server.getsockname()[1]
    container = await docker_networked.create(kind, 256)
    assert isinstance(container, DockerContainer) and container.lease is not None
    # When the action connects to each target
    result = await run(container, code, {"targets": targets(outside, port, gateway), "name": NAME})
    # Then as in the process sandbox: the outside host and the API answer, the name
    # resolves through the configured resolver, everything else is refused
    assert result["api_host"] == f"http://{gateway}:{port}"
    assert result["outside"] == "connected"
    assert result["api"] == "connected"
    assert result["dns"] == outside.public
    refused = "ConnectionRefusedError" if kind.startswith("python") else "ECONNREFUSED"
    unreachable = {"EHOSTUNREACH", "ENETUNREACH", "OSError", refused}
    for name in ("gateway_other_port", "loopback_api", "host_address", "private", "metadata"):
        assert result[name] in unreachable, (name, result)
    # And destroying it removes its link
    await container.destroy()
    assert container.lease.ifname not in {i for _, i in socket.if_nameindex()}


async def test_a_docker_container_without_network_reaches_nothing(
    docker_networked: DockerContainerFactory, outside: OutsideHost, api_server: socket.socket
) -> None:
    # Given a Docker container created with network=False
    network = docker_networked.network
    assert network is not None and network.block is not None
    port = api_server.getsockname()[1]
    container = await docker_networked.create("python:3.11", 256, network=False)
    # When it tries everything, Then nothing connects
    result = await run(
        container,
        PY_CONNECT,
        {"targets": targets(outside, port, str(network.block.gateway)), "name": NAME},
    )
    assert "connected" not in [v for k, v in result.items() if k != "api_host"], result
