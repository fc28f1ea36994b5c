"""Building an invoker from its providers: the same wiring for both shapes.

The sandbox comes first: a host that cannot isolate actions is refused before anything
else opens (unless the operator asked for ``--unsafe-no-isolation``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from urllib.parse import urlsplit

from squall.bus.contracts import MessagingProvider
from squall.config import Settings
from squall.errors import ContainerError
from squall.invoker.apikeys import ActionKeys, load_secret
from squall.invoker.pool import ContainerPool
from squall.invoker.prewarm import manifest_stem_cells, parse_stem_cells
from squall.invoker.service import Invoker
from squall.sandbox.egress import EgressPolicy
from squall.sandbox.interpreters import Runtimes, for_settings
from squall.sandbox.isolation import Isolation
from squall.sandbox.network import SandboxNetwork
from squall.sandbox.process import ProcessContainerFactory
from squall.store.contracts import ActivationStore, AuthStore, EntityStore

log = logging.getLogger("squall.invoker")


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


def container_factory(settings: Settings) -> ProcessContainerFactory:
    network_mode(settings)  # a wrong setting is refused before anything starts
    return ProcessContainerFactory(
        settings.containers_dir,
        settings.effective_api_host,
        isolation=isolation(settings),
        runtimes=runtimes(settings),
        network=sandbox_network(settings),
        network_default=network_mode(settings),
    )


def build_invoker(
    settings: Settings,
    factory: ProcessContainerFactory,
    entities: EntityStore,
    activations: ActivationStore,
    auth: AuthStore,
    bus: MessagingProvider,
    *,
    cluster: bool,
) -> Invoker:
    """An invoker, not yet started. In a cluster it pings controllers and expires
    messages that waited longer than a blocking invoke would. Its actions get action keys
    derived from the settings' secret (standalone: the secret file under the home; a
    cluster invoker without a secret gives none, see :func:`load_secret`)."""
    pool = ContainerPool(
        factory,
        settings.user_memory_mb,
        settings.keep_warm_s,
        pause_grace_s=settings.pause_grace_s,
        warm_wait_s=settings.warm_wait_ms / 1000,
        stem_cells=(
            manifest_stem_cells(factory.runtimes.manifest)
            if settings.stem_cells.strip() == "manifest"
            else parse_stem_cells(settings.stem_cells)
        ),
        stem_network=network_mode(settings),
    )
    return Invoker(
        settings.invoker_id,
        bus,
        entities,
        activations,
        pool,
        ping_interval_s=settings.ping_interval_s if cluster else 0.0,
        max_wait_ms=settings.max_blocking_wait_ms if cluster else 0,
        api_keys=ActionKeys(auth, load_secret(settings, cluster=cluster)),
    )
