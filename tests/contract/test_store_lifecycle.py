"""Contract guarantees shared by all three stores: concurrent writers, durability, close."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from squall.entities.activation import Activation, ActivationResponse
from squall.errors import Conflict, ProviderError
from squall.store.contracts import ActivationQuery

from .conftest import FakeClock, Provider, Stores

pytestmark = pytest.mark.anyio

NS = "guest"


async def test_one_writer_wins_per_revision(stores: Stores) -> None:
    # Given a document and 20 tasks that all hold its current revision
    start = await stores.entities.put(NS, "actions", "hot", {"writer": None}, None)
    outcomes: list[str] = []

    async def write(i: int) -> None:
        try:
            await stores.entities.put(NS, "actions", "hot", {"writer": i}, start.rev)
            outcomes.append("won")
        except Conflict:
            outcomes.append("conflict")

    # When they all write at once
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(write, i)
    # Then exactly one wins and the other 19 get Conflict
    assert Counter(outcomes) == {"won": 1, "conflict": 19}
    final = await stores.entities.get(NS, "actions", "hot")
    assert final.rev != start.rev


async def test_read_modify_write_loops_form_one_chain_of_revisions(stores: Stores) -> None:
    # Given a counter document and 10 tasks that each try 10 times to increment it,
    # yielding between their read and their write so that the tasks interleave
    await stores.entities.put(NS, "actions", "counter", {"n": 0}, None)
    wins: list[tuple[str, str]] = []  # (revision written over, new revision)
    conflicts = 0

    async def increment() -> None:
        nonlocal conflicts
        for _ in range(10):
            current = await stores.entities.get(NS, "actions", "counter")
            await anyio.lowlevel.checkpoint()
            body = {"n": current.body["n"] + 1}
            try:
                new = await stores.entities.put(NS, "actions", "counter", body, current.rev)
            except Conflict:
                conflicts += 1
            else:
                wins.append((current.rev, new.rev))

    # When they run concurrently
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(increment)
    # Then every attempt either won or conflicted, at most one win per revision,
    # and no increment was lost
    assert len(wins) + conflicts == 100
    assert conflicts > 0
    assert len({base for base, _ in wins}) == len(wins)
    final = await stores.entities.get(NS, "actions", "counter")
    assert final.body == {"n": len(wins)}
    assert final.rev == wins[-1][1]


async def test_data_survives_close_and_reopen(
    durable_provider: Provider, tmp_path: Path, clock: FakeClock
) -> None:
    # Given an entity, an activation and a subject written, then the store closed
    first = await durable_provider.open(tmp_path, clock)
    doc = await first.entities.put(NS, "actions", "pkg/hello", {"v": 1}, None)
    record = Activation(
        namespace=NS, name="hello", activation_id="f" * 32, start=5,
        response=ActivationResponse.ok({}),
    )  # fmt: skip
    await first.activations.put(record)
    subject = await first.auth.create_subject(NS)
    await first.auth.set_limits(NS, {"invocationsPerMinute": 7})
    await first.close()
    # When the store is opened again
    second = await durable_provider.open(tmp_path, clock)
    try:
        # Then everything is still there and still works
        assert await second.entities.get(NS, "actions", "pkg/hello") == doc
        assert await second.entities.list(NS, "actions", package="pkg") == [doc]
        assert await second.activations.get(NS, "f" * 32) == record
        assert subject.key is not None
        assert await second.auth.authenticate(subject.uuid, subject.key) is not None
        assert await second.auth.get_limits(NS) == {"invocationsPerMinute": 7}
        # And writing with the revision read before the restart still succeeds
        await second.entities.put(NS, "actions", "pkg/hello", {"v": 2}, doc.rev)
    finally:
        await second.close()


async def test_every_method_raises_after_close(provider: Provider, tmp_path: Path) -> None:
    # Given a store that was closed (twice: close is idempotent)
    stores = await provider.open(tmp_path, FakeClock())
    await stores.close()
    await stores.close()
    record = Activation(
        namespace=NS, name="a", activation_id="1", start=1, response=ActivationResponse.ok({})
    )
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: stores.entities.get(NS, "actions", "a"),
        lambda: stores.entities.put(NS, "actions", "a", {}, None),
        lambda: stores.entities.delete(NS, "actions", "a"),
        lambda: stores.entities.list(NS, "actions"),
        lambda: stores.entities.count(NS, "actions"),
        lambda: stores.activations.put(record),
        lambda: stores.activations.put_pending(record),
        lambda: stores.activations.put_unless_final(record),
        lambda: stores.activations.prune(1),
        lambda: stores.activations.get(NS, "1"),
        lambda: stores.activations.list(ActivationQuery(NS)),
        lambda: stores.activations.count(ActivationQuery(NS)),
        lambda: stores.auth.create_subject(NS),
        lambda: stores.auth.get_subject(NS),
        lambda: stores.auth.delete_subject(NS),
        lambda: stores.auth.list_subjects(),
        lambda: stores.auth.authenticate("u", "k"),
        lambda: stores.auth.get_limits(NS),
        lambda: stores.auth.set_limits(NS, {}),
    ]
    # When any method is called / Then ProviderError "store is closed"
    for call in calls:
        with pytest.raises(ProviderError, match="store is closed"):
            await call()
