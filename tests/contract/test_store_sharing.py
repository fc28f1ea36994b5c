"""Two stores opened on the same data at once — what several controllers sharing one
database do: migrations, revisions, claims and activation records stay consistent
across them (SQLite file and PostgreSQL; an in-memory store cannot be shared)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from squall.errors import Conflict
from squall.store.contracts import ActivationQuery

from .conftest import FakeClock, Provider, Stores
from .test_activation_store import pending, record, whisk_error

pytestmark = pytest.mark.anyio

NS = "guest"


@pytest.fixture
async def pair(
    durable_provider: Provider, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[Stores, Stores]]:
    # Opened together on a fresh location: both migrate it at the same moment.
    first, second = await asyncio.gather(
        durable_provider.open(tmp_path, clock), durable_provider.open(tmp_path, clock)
    )
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_two_stores_opened_at_once_share_one_schema(pair: tuple[Stores, Stores]) -> None:
    # Given two stores whose opens migrated the same new location concurrently
    first, second = pair
    # When one writes / Then the other reads it, in every store
    doc = await first.entities.put(NS, "actions", "hello", {"v": 1}, None)
    assert await second.entities.get(NS, "actions", "hello") == doc
    subject = await second.auth.create_subject(NS)
    assert subject.key is not None
    assert await first.auth.authenticate(subject.uuid, subject.key) is not None
    await first.activations.put(record("a" * 32, 1000))
    assert await second.activations.count(ActivationQuery(NS)) == 1


async def test_concurrent_writes_with_one_revision_from_two_stores(
    pair: tuple[Stores, Stores],
) -> None:
    # Given a document both stores see at the same revision
    first, second = pair
    doc = await first.entities.put(NS, "actions", "hot", {"writer": None}, None)
    outcomes: list[str] = []

    async def write(stores: Stores, i: int) -> None:
        try:
            await stores.entities.put(NS, "actions", "hot", {"writer": i}, doc.rev)
            outcomes.append("won")
        except Conflict:
            outcomes.append("conflict")

    # When ten writers on each store write with that revision at once
    await asyncio.gather(*(write(pair[i % 2], i) for i in range(20)))
    # Then exactly one wins
    assert Counter(outcomes) == {"won": 1, "conflict": 19}
    final = await second.entities.get(NS, "actions", "hot")
    assert final.rev != doc.rev
    # And creating one name from both stores at once also lets exactly one through
    created = await asyncio.gather(
        *(pair[i % 2].entities.put(NS, "rules", "r", {"i": i}, None) for i in range(6)),
        return_exceptions=True,
    )
    assert sum(not isinstance(c, BaseException) for c in created) == 1
    assert all(isinstance(c, Conflict) for c in created if isinstance(c, BaseException))


async def test_a_tick_is_claimed_once_across_stores(pair: tuple[Stores, Stores]) -> None:
    # When both stores claim the same ticks many times at once
    claims = await asyncio.gather(
        *(pair[i % 2].schedules.claim(f"guest/t/{i % 3}", 100) for i in range(30))
    )
    # Then each of the three ticks was won exactly once
    assert Counter(claims) == {True: 3, False: 27}


async def test_schedule_revisions_across_stores(pair: tuple[Stores, Stores]) -> None:
    first, second = pair
    created = await first.schedules.put(NS, "t", {}, 10, None)
    results = await asyncio.gather(
        first.schedules.put(NS, "t", {"by": 1}, 20, created.rev),
        second.schedules.put(NS, "t", {"by": 2}, 30, created.rev),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Conflict) for r in results) == 1


async def test_final_records_win_across_stores(pair: tuple[Stores, Stores]) -> None:
    # Given pending records, and for each the final record put by one store while the
    # other ends the activation as lost
    first, second = pair
    ids = [f"{i:032x}" for i in range(10)]
    await asyncio.gather(*(first.activations.put_pending(pending(i, 1000)) for i in ids))
    writes: list[Any] = []
    for n, i in enumerate(ids):
        finals, losers = (first, second) if n % 2 else (second, first)
        writes += [
            finals.activations.put(record(i, 1000)),
            losers.activations.put_unless_final(whisk_error(i, 1000)),
        ]
    await asyncio.gather(*writes)
    # Then every record is the final one
    for i in ids:
        assert await second.activations.get(NS, i) == record(i, 1000)
