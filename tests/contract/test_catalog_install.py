"""Installing the standard catalog at start-up on every store provider: the controllers of
a cluster install it at the same moment on one database (here: several installers over two
stores opened on the same data), a restart rewrites nothing, and an entity left by an
older Squall is brought up to date once, its version bumped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from squall.catalog.install import install_catalog, install_entity
from squall.catalog.manifest import PACKAGES, SYSTEM_NAMESPACE, UTILS
from squall.controller.catalog import Catalog
from squall.entities.action import Action
from squall.entities.kinds import CodeExec
from squall.entities.names import EntityPath
from squall.store.contracts import Document

from .conftest import FakeClock, Provider, Stores

pytestmark = pytest.mark.anyio

INSTALLERS = 4


@pytest.fixture
async def pair(
    durable_provider: Provider, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[Stores, Stores]]:
    first = await durable_provider.open(tmp_path, clock)
    second = await durable_provider.open(tmp_path, clock)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def installers(pair: tuple[Stores, Stores]) -> list[Catalog]:
    """Catalogs as separate controllers have them: each its own cache, over either store."""
    return [Catalog(pair[i % 2].entities) for i in range(INSTALLERS)]


async def stored(stores: Stores) -> dict[tuple[str, str], Document]:
    """Every document of ``whisk.system`` by (collection, name)."""
    out: dict[tuple[str, str], Document] = {}
    for collection in ("packages", "actions"):
        for doc in await stores.entities.list(SYSTEM_NAMESPACE, collection):
            out[(collection, doc.name)] = doc
    return out


def expected_names() -> set[tuple[str, str]]:
    names = {("packages", p.name) for p in PACKAGES}
    names |= {("actions", f"{p.name}/{a.name}") for p in PACKAGES for a in p.actions}
    return names


async def test_concurrent_installs_create_each_entity_once(pair: tuple[Stores, Stores]) -> None:
    # Given an empty store / When several controllers install the catalog at once
    await asyncio.gather(*(install_catalog(c) for c in installers(pair)))
    # Then every package and action exists once, at its first version
    docs = await stored(pair[0])
    assert set(docs) == expected_names()
    assert {doc.body["version"] for doc in docs.values()} == {"0.0.1"}
    # And both stores see the same revisions
    assert {k: d.rev for k, d in (await stored(pair[1])).items()} == {
        k: d.rev for k, d in docs.items()
    }


async def test_a_restart_rewrites_nothing(pair: tuple[Stores, Stores]) -> None:
    # Given an installed catalog
    await install_catalog(Catalog(pair[0].entities))
    before = await stored(pair[0])
    # When the controllers start again / Then no document has a new revision
    await asyncio.gather(*(install_catalog(c) for c in installers(pair)))
    assert await stored(pair[1]) == before


async def test_an_outdated_action_is_updated_once(pair: tuple[Stores, Stores]) -> None:
    # Given the catalog as an older Squall left it: echo with other code
    await install_catalog(Catalog(pair[0].entities))
    path = EntityPath(SYSTEM_NAMESPACE, UTILS.name, "echo")
    current = await Catalog(pair[0].entities).get(Action, path)
    old = CodeExec(kind=current.exec.kind, code="function main() { return {}; }", binary=False)
    await Catalog(pair[0].entities).put(
        Action(path, old, annotations=current.annotations, rev=current.rev), create=False
    )
    # When several controllers of the new version install at once
    await asyncio.gather(*(install_catalog(c) for c in installers(pair)))
    # Then echo has the shipped code again, written once: one patch version up
    echo = await Catalog(pair[1].entities).get(Action, path)
    shipped = next(a for a in UTILS.action_entities() if a.path == path)
    assert echo.exec == shipped.exec
    assert echo.version == "0.0.2"
    # And a further install leaves it as it is
    await install_entity(Catalog(pair[0].entities), shipped)
    assert (await Catalog(pair[0].entities).get(Action, path)).rev == echo.rev
