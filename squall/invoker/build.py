"""Building an invoker from its providers: the same wiring for both shapes.

The sandbox comes first: a host that cannot isolate actions is refused before anything
else opens (unless the operator asked for ``--unsafe-no-isolation``).
"""

from __future__ import annotations

import logging

from squall.bus.contracts import MessagingProvider
from squall.config import Settings
from squall.invoker.pool import ContainerPool
from squall.invoker.prewarm import manifest_stem_cells, parse_stem_cells
from squall.invoker.service import Invoker
from squall.sandbox.interpreters import Runtimes, for_settings
from squall.sandbox.isolation import Isolation
from squall.sandbox.process import ProcessContainerFactory
from squall.store.contracts import ActivationStore, EntityStore

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
        network=settings.sandbox_network,
        cgroup_root=settings.cgroup_root,
        user_memory_mb=settings.user_memory_mb,
    )


def runtimes(settings: Settings) -> Runtimes:
    """The kinds this host offers and their interpreters (ConfigError on a version
    mismatch); logs what was found and what is not offered."""
    found = for_settings(settings)
    found.log_summary()
    return found


def container_factory(settings: Settings) -> ProcessContainerFactory:
    return ProcessContainerFactory(
        settings.containers_dir,
        settings.effective_api_host,
        isolation=isolation(settings),
        runtimes=runtimes(settings),
    )


def build_invoker(
    settings: Settings,
    factory: ProcessContainerFactory,
    entities: EntityStore,
    activations: ActivationStore,
    bus: MessagingProvider,
    *,
    cluster: bool,
) -> Invoker:
    """An invoker, not yet started. In a cluster it pings controllers and expires
    messages that waited longer than a blocking invoke would."""
    pool = ContainerPool(
        factory,
        settings.user_memory_mb,
        settings.keep_warm_s,
        pause_grace_s=settings.pause_grace_s,
        stem_cells=(
            manifest_stem_cells(factory.runtimes.manifest)
            if settings.stem_cells.strip() == "manifest"
            else parse_stem_cells(settings.stem_cells)
        ),
    )
    return Invoker(
        settings.invoker_id,
        bus,
        entities,
        activations,
        pool,
        ping_interval_s=settings.ping_interval_s if cluster else 0.0,
        max_wait_ms=settings.max_blocking_wait_ms if cluster else 0,
    )
