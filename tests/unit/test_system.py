"""The composition root (``squall/system.py``): late binding, refusals, stopping what
started, and a cluster controller wired through its constructors — in process, over a
SQLite file and the in-process bus (the cluster tests run it over PostgreSQL and NATS).
Standalone is built the same way by every test under tests/api."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from squall.bus.messages import (
    HEALTH_SUBJECT,
    INVALIDATION_SUBJECT,
    INVOKER_UP,
    ActivationMessage,
    Invalidation,
    InvokerPing,
    invoker_topic,
)
from squall.config import Settings
from squall.controller.cluster import HEALTH_ACTION, SYSTEM_NAMESPACE
from squall.entities import manifest as in_use
from squall.entities.action import Action
from squall.entities.activation import now_ms
from squall.entities.kinds import CodeExec
from squall.entities.names import EntityPath
from squall.errors import ConfigError, ProviderError
from squall.late import Late
from squall.providers import CLUSTER, STANDALONE
from squall.store.contracts import Store
from squall.store.factory import open_store
from squall.system import INVOKER, start

pytestmark = pytest.mark.anyio


@pytest.fixture
async def restore_manifest() -> AsyncIterator[None]:
    """A controller installs its manifest process-wide: put back the one before."""
    before = in_use.manifest()
    try:
        yield
    finally:
        in_use.use_manifest(before)


def test_a_late_part_is_bound_once_and_never_used_unbound() -> None:
    late: Late[str] = Late("the part")
    with pytest.raises(RuntimeError, match="the part is used before it was built"):
        late.get()
    assert late.bind("built") == "built" and late.get() == "built"
    with pytest.raises(RuntimeError, match="bound twice"):
        late.bind("again")


async def test_a_lone_invoker_needs_a_cluster_balancer(tmp_path: Path) -> None:
    # When an invoker is asked for with standalone's providers (its invoker is the lean
    # controller's own) / Then it is refused before anything opens
    home = tmp_path / "home"
    with pytest.raises(ConfigError, match="needs a cluster's balancer"):
        await start(Settings(home=home), STANDALONE, INVOKER)
    assert not home.exists()


async def test_a_start_that_fails_stops_what_had_started(tmp_path: Path) -> None:
    # Given a store that opens and a bus URL that names no bus
    opened: list[Store] = []

    async def store(settings: Settings) -> Store:
        opened.append(await open_store(settings))
        return opened[-1]

    settings = Settings(home=tmp_path, store_url=f"sqlite:///{tmp_path}/s.db", bus_url="x://y")
    # When the cluster controller starts / Then the bus is refused
    with pytest.raises(ConfigError, match="bus_url"):
        await start(settings, replace(CLUSTER, store=store))
    # And the store it had opened is closed
    [opened_store] = opened
    with pytest.raises(ProviderError, match="closed"):
        await opened_store.entities.get("guest", "actions", "a")


async def test_a_cluster_controller_gets_its_hooks_when_built(
    tmp_path: Path, restore_manifest: None
) -> None:
    # Given a cluster controller (no invoker in its process)
    settings = Settings(home=tmp_path, store_url=f"sqlite:///{tmp_path}/s.db")
    system = await start(settings, CLUSTER)
    try:
        assert system.invoker is None and system.factory is None
        controller = system.controller
        assert controller is not None
        bus = system.bus
        invalidations = await bus.subscribe(INVALIDATION_SUBJECT)
        work = await bus.consumer(invoker_topic("7"))
        # When an invoker appears
        ping = InvokerPing("7", 1024, INVOKER_UP, now_ms(), incarnation="one")
        await bus.publish(HEALTH_SUBJECT, ping.to_bytes())
        # Then the registry's health test (bound late) sends it the health-test action
        delivery = await asyncio.wait_for(work.receive(), 10)
        message = ActivationMessage.from_bytes(delivery.data)
        assert message.namespace == SYSTEM_NAMESPACE and message.action.endswith(HEALTH_ACTION)
        # And the controller lists it, as /invokers does
        assert [i["id"] for i in controller.invokers()] == ["invoker7"]
        # When an action is written through the controller's catalog
        action = Action(
            path=EntityPath("guest", "", "hello"),
            exec=CodeExec(kind="nodejs:20", code="function main() { return {} }", binary=False),
        )
        await controller.catalog.put(action, create=True)

        # Then the other controllers are told to drop their copy (after, maybe, the
        # health-test action the controller created as it started)
        async def next_change() -> Invalidation:
            while True:
                change = Invalidation.from_bytes(await invalidations.next())
                if change.namespace != SYSTEM_NAMESPACE:
                    return change

        change = await asyncio.wait_for(next_change(), 10)
        assert (change.controller, change.namespace, change.path) == ("0", "guest", "hello")
    finally:
        await system.close()
    # And closing stopped everything down to the store
    with pytest.raises(ProviderError, match="closed"):
        await system.store.entities.get("guest", "actions", "hello")
