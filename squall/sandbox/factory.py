"""Opening the sandbox a :class:`~squall.config.Settings` names: the process sandbox
(bubblewrap + cgroups) with its isolation, network and runtimes, and the Docker backend
beside it (custom images; every kind with ``container_backend`` "docker"), routed by
``sandbox/backends.py`` — as ``store/factory.py`` and ``bus/factory.py`` open the others.

The composition root (``squall/system.py``) calls it first: a host that cannot isolate
actions is refused before anything else opens (unless the operator asked for
``--unsafe-no-isolation``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from urllib.parse import urlsplit

from squall.config import Settings
from squall.errors import ContainerError
from squall.sandbox.backends import BackendRouter
from squall.sandbox.docker import DockerContainerFactory
from squall.sandbox.egress import EgressPolicy
from squall.sandbox.interpreters import Runtimes, for_settings
from squall.sandbox.isolation import Isolation
from squall.sandbox.network import SandboxNetwork
from squall.sandbox.process import ProcessContainerFactory

log = logging.getLogger(__name__)


def isolation(settings: Settings) -> Isolation | None:
    """The sandbox isolation the settings ask for; ContainerError if the host lacks it."""
    if settings.unsafe_no_isolation:
        log.warning(
            "--unsafe-no-isolation: actions run as plain processes that can read and change "
            "everything this process can; never use this with code you do not trust"
        )
        return None
    return Isolation.detect(
        cgroup_root=settings.cgroup_root,
        user_memory_mb=settings.user_memory_mb,
    )


def network_mode(settings: Settings) -> bool:
    """Whether namespaces without a ``network`` limit get a network (checked setting)."""
    if settings.sandbox_network not in ("egress", "none"):
        raise ContainerError(
            f"sandbox network must be 'egress' or 'none', not {settings.sandbox_network!r}"
        )
    return settings.sandbox_network == "egress"


def api_target(api_host: str) -> tuple[str, int]:
    """Where the API listens, as an IPv4 address and port, for the sandboxes' DNAT: the
    URL actions are given, its name resolved here and an unspecified address (0.0.0.0)
    taken as loopback."""
    url = urlsplit(api_host)
    port = url.port or (443 if url.scheme == "https" else 80)
    host = url.hostname or "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.ip_address(socket.gethostbyname(host))
        except OSError as ex:
            raise ContainerError(f"cannot resolve the API host {host!r}: {ex}") from ex
    if address.version != 4:
        raise ContainerError(f"sandboxes reach the API over IPv4 only, not {address}")
    return ("127.0.0.1" if address.is_unspecified else str(address)), port


def sandbox_network(settings: Settings) -> SandboxNetwork | None:
    """The sandboxes' network (None without isolation: processes share the host's)."""
    if settings.unsafe_no_isolation:
        return None
    policy = EgressPolicy.from_text(
        allow=settings.sandbox_allow,
        deny=settings.sandbox_deny,
        dns=settings.sandbox_dns,
        subnet=settings.sandbox_subnet,
    )
    return SandboxNetwork(policy, api_target(settings.effective_api_host))


def runtimes(settings: Settings) -> Runtimes:
    """The kinds this host offers and their interpreters (ConfigError on a version
    mismatch); logs what was found and what is not offered."""
    found = for_settings(settings)
    found.log_summary()
    return found


def container_factory(settings: Settings) -> BackendRouter:
    """The invoker's container backends: the process sandbox and Docker (custom images
    always; the built-in kinds too with ``container_backend`` "docker"). Docker borrows
    the process sandbox's network, so both give containers the same egress rules."""
    network_mode(settings)  # a wrong setting is refused before anything starts
    if settings.container_backend not in ("process", "docker"):
        raise ContainerError(
            f"container backend must be 'process' or 'docker', not {settings.container_backend!r}"
        )
    process = ProcessContainerFactory(
        settings.containers_dir,
        settings.effective_api_host,
        isolation=isolation(settings),
        runtimes=runtimes(settings),
        network=sandbox_network(settings),
        network_default=network_mode(settings),
    )
    docker = DockerContainerFactory(
        settings.docker_dir,
        settings.effective_api_host,
        docker_host=settings.docker_host,
        builtin=settings.container_backend == "docker",
        network=process.network,
    )
    if settings.container_backend == "docker":
        return BackendRouter([docker, process], process.runtimes)
    return BackendRouter([process, docker], process.runtimes)


async def start_backends(settings: Settings, factory: BackendRouter) -> None:
    """Connect the Docker backend and remove what a previous invoker left there. Without
    a Docker daemon, custom-image actions fail (saying so) and the rest runs, unless
    Docker runs the built-in kinds: then ContainerError."""
    try:
        await factory.start()
    except ContainerError as ex:
        if settings.container_backend == "docker":
            raise
        log.info("no Docker backend (custom-image actions cannot run): %s", ex.message)
