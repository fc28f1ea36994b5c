"""The controller's action cache (controller/catalog.py) against a real SQLite store:
an action written through the catalog is cached as stored, unless writes overlapped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from squall.controller.catalog import Catalog
from squall.controller.routes.common import find
from squall.entities.action import Action
from squall.entities.names import EntityPath
from squall.store.contracts import Document, EntityStore
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

PATH = EntityPath("guest", "", "hello")


class Watched:
    """The real entity store, counting its reads; a write may be held at a gate."""

    def __init__(self, inner: EntityStore) -> None:
        self.inner = inner
        self.reads = 0
        self.gate: asyncio.Event | None = None
        # A read's answer may be held at this gate (read, not yet handed back).
        self.read_gate: asyncio.Event | None = None

    async def get(self, namespace: str, collection: str, name: str) -> Document:
        self.reads += 1
        doc = await self.inner.get(namespace, collection, name)
        gate, self.read_gate = self.read_gate, None
        if gate is not None:
            await gate.wait()
        return doc

    async def put(self, *args: Any) -> Document:
        gate, self.gate = self.gate, None
        if gate is not None:
            await gate.wait()
        return await self.inner.put(*args)

    async def delete(self, *args: Any) -> None:
        await self.inner.delete(*args)


@pytest.fixture
async def store(anyio_backend: str, tmp_path: Path) -> AsyncIterator[Watched]:
    opened = await SqliteStore.open(tmp_path / "squall.db")
    try:
        yield Watched(opened.entities)
    finally:
        await opened.close()


def action(code: str) -> Action:
    return Action.create(PATH, {"exec": {"kind": "python:3.11", "code": code}})


async def test_an_action_written_is_served_without_a_store_read(store: Watched) -> None:
    # Given a catalog, When an action is created and then updated through it
    catalog = Catalog(store)  # type: ignore[arg-type]
    created = await catalog.put(action("def main(a): return {}"), create=True)
    # Then its first lookup reads nothing from the store and gets it as stored
    assert await catalog.get(Action, PATH) == created
    assert store.reads == 0
    change = {"exec": {"kind": "python:3.11", "code": "def main(a): return {'v': 2}"}}
    updated = await catalog.put(created.update(change), create=False)
    assert updated.rev != created.rev
    # And after an update the lookup gets the new revision, still without a read
    got = await catalog.get(Action, PATH)
    assert got == updated and got.rev == updated.rev
    assert store.reads == 0


async def test_overlapping_writes_leave_the_lookup_to_the_store(store: Watched) -> None:
    # Given an action, and two writes of it in flight together (the first held at a gate)
    catalog = Catalog(store)  # type: ignore[arg-type]
    first = await catalog.put(action("def main(a): return {}"), create=True)
    store.gate = gate = asyncio.Event()
    slow = asyncio.ensure_future(
        catalog.put(first.update({"limits": {"memory": 128}}), create=False)
    )
    await asyncio.sleep(0)
    await catalog.put(first.update({"limits": {"memory": 512}}), create=False)
    gate.set()
    # When both ended (the held one conflicts or wins: either way its store decides)
    await asyncio.gather(slow, return_exceptions=True)
    # Then the lookup reads the store, and gets what it holds
    got = await catalog.get(Action, PATH)
    assert store.reads == 1
    assert got.rev == (await store.inner.get("guest", "actions", "hello")).rev


async def test_a_change_told_by_another_controller_during_a_write_is_not_lost(
    store: Watched,
) -> None:
    # Given an action and a write of it held in flight on this controller
    catalog = Catalog(store)  # type: ignore[arg-type]
    first = await catalog.put(action("def main(a): return {}"), create=True)
    store.gate = gate = asyncio.Event()
    slow = asyncio.ensure_future(
        catalog.put(first.update({"limits": {"memory": 128}}), create=False)
    )
    await asyncio.sleep(0)
    # When another controller's change of it is told meanwhile (cluster.py's broadcast)
    catalog.invalidate("guest", "hello")
    gate.set()
    await slow
    # Then the write's result is not cached: the lookup asks the store
    await catalog.get(Action, PATH)
    assert store.reads == 1


async def test_an_action_written_is_handed_to_on_read_at_its_first_lookup(
    store: Watched,
) -> None:
    # Given a catalog whose looked-up actions are handed on (standalone: to the invoker,
    # which keeps every revision handed to it)
    handed: list[Action] = []
    catalog = Catalog(store, on_read=handed.append)  # type: ignore[arg-type]
    # When an action is created through it, updated, and only then looked up twice
    created = await catalog.put(action("def main(a): return {}"), create=True)
    updated = await catalog.put(created.update({"limits": {"memory": 512}}), create=False)
    assert handed == []  # a revision only written is not handed over
    await catalog.get(Action, PATH, invoking=True)
    await catalog.get(Action, PATH, invoking=True)
    # Then the revision looked up was handed on once, with nothing read from the store
    assert handed == [updated]
    assert store.reads == 0


async def test_an_action_read_from_the_store_is_handed_to_on_read(store: Watched) -> None:
    # Given an action the catalog does not hold (written by another controller, say)
    handed: list[Action] = []
    catalog = Catalog(store, on_read=handed.append)  # type: ignore[arg-type]
    created = await catalog.put(action("def main(a): return {}"), create=True)
    catalog.invalidate("guest", "hello")
    # When it is invoked twice
    await catalog.get(Action, PATH, invoking=True)
    await catalog.get(Action, PATH, invoking=True)
    # Then it was read once and handed on once
    assert store.reads == 1
    assert [a.rev for a in handed] == [created.rev]


async def test_only_an_invokes_lookup_hands_an_action_to_on_read(store: Watched) -> None:
    # Given a catalog whose invoked actions are handed on (standalone: to the invoker)
    handed: list[Action] = []
    catalog = Catalog(store, on_read=handed.append)  # type: ignore[arg-type]
    # When an action is created, updated twice and read, each through the lookups the
    # PUT ?overwrite=true, GET and DELETE routes make (routes/common.py's find, get)
    await catalog.put(action("def main(a): return {}"), create=True)
    for memory in (256, 512):
        existing = await find(catalog, Action, PATH)
        assert existing is not None
        await catalog.put(existing.update({"limits": {"memory": memory}}), create=False)
    catalog.invalidate("guest", "hello")  # read from the store too, not only cached
    read = await catalog.get(Action, PATH)
    # Then nothing was handed over (the deploy loop's revisions do not pile up there)
    assert handed == []
    # When it is invoked: that revision is handed over, once
    invoked = await catalog.get(Action, PATH, invoking=True)
    await catalog.get(Action, PATH, invoking=True)
    assert handed == [invoked] and invoked.rev == read.rev
    # And a delete's lookup hands nothing more
    await catalog.delete(await catalog.get(Action, PATH))
    assert handed == [invoked]


async def test_a_read_that_overlapped_a_write_does_not_cache_the_version_before_it(
    store: Watched,
) -> None:
    # Given an action, and a lookup whose store read got the first version but is held
    # before it hands it back (as a PostgreSQL read can finish after a write)
    catalog = Catalog(store)  # type: ignore[arg-type]
    first = await catalog.put(action("def main(a): return {}"), create=True)
    catalog.invalidate("guest", "hello")  # as a cluster's broadcast would: not cached
    store.read_gate = gate = asyncio.Event()
    slow = asyncio.ensure_future(catalog.get(Action, PATH))
    await asyncio.sleep(0)
    # When a write of a new version ends meanwhile, and then the held read
    second = await catalog.put(first.update({"limits": {"memory": 512}}), create=False)
    gate.set()
    assert (await slow).rev == first.rev
    # Then the lookup after it gets the new version, not the one the held read got
    assert (await catalog.get(Action, PATH)).rev == second.rev
