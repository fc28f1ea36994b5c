"""ScheduleStore contract: revisions, the due index, claims that one caller wins, prune,
durability and close."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from squall.errors import Conflict, NotFound, ProviderError

from .conftest import FakeClock, Provider, Stores

pytestmark = pytest.mark.anyio

NS = "guest"


async def test_put_get_replace_delete(stores: Stores) -> None:
    # When a schedule is created
    created = await stores.schedules.put(NS, "t", {"feed": "interval"}, 1000, None)
    # Then it comes back with its body, due time and a revision
    assert (created.namespace, created.trigger, created.body, created.due) == (
        NS,
        "t",
        {"feed": "interval"},
        1000,
    )
    assert created.rev
    assert await stores.schedules.get(NS, "t") == created
    # And a second create is a Conflict
    with pytest.raises(Conflict):
        await stores.schedules.put(NS, "t", {}, None, None)
    # When it is replaced at its revision (nothing scheduled any more)
    replaced = await stores.schedules.put(NS, "t", {"paused": True}, None, created.rev)
    # Then the body and due change, and so does the revision
    assert replaced.body == {"paused": True} and replaced.due is None
    assert replaced.rev != created.rev
    # And the old revision is stale, for put and delete alike
    with pytest.raises(Conflict):
        await stores.schedules.put(NS, "t", {}, 5, created.rev)
    with pytest.raises(Conflict):
        await stores.schedules.delete(NS, "t", created.rev)
    # When deleted at the current revision / Then gone
    await stores.schedules.delete(NS, "t", replaced.rev)
    with pytest.raises(NotFound):
        await stores.schedules.get(NS, "t")
    with pytest.raises(NotFound):
        await stores.schedules.delete(NS, "t")
    # And a revision of a deleted schedule is stale too
    with pytest.raises(Conflict):
        await stores.schedules.put(NS, "t", {}, 5, replaced.rev)


async def test_schedules_are_per_namespace(stores: Stores) -> None:
    await stores.schedules.put("a", "t", {"owner": "a"}, 1, None)
    await stores.schedules.put("b", "t", {"owner": "b"}, 2, None)
    assert (await stores.schedules.get("a", "t")).body == {"owner": "a"}
    assert (await stores.schedules.get("b", "t")).body == {"owner": "b"}


async def test_due_lists_earliest_first_and_skips_unscheduled(stores: Stores) -> None:
    # Given schedules due at 30, 10, 20 (two at 20), one later and one with nothing due
    await stores.schedules.put(NS, "c", {}, 30, None)
    await stores.schedules.put(NS, "a", {}, 10, None)
    await stores.schedules.put("other", "b", {}, 20, None)
    await stores.schedules.put(NS, "b", {}, 20, None)
    await stores.schedules.put(NS, "late", {}, 1000, None)
    await stores.schedules.put(NS, "paused", {}, None, None)
    # When listing what is due at 30
    due = await stores.schedules.due(30, limit=10)
    # Then by due time, then namespace, then trigger; nothing later, nothing unscheduled
    assert [(s.namespace, s.trigger, s.due) for s in due] == [
        (NS, "a", 10),
        (NS, "b", 20),
        ("other", "b", 20),
        (NS, "c", 30),
    ]
    assert [s.trigger for s in await stores.schedules.due(30, limit=2)] == ["a", "b"]
    assert await stores.schedules.due(5, limit=10) == []
    # And the earliest due time of all is 10; without schedules there is none
    assert await stores.schedules.next_due() == 10
    for s in await stores.schedules.due(10_000, limit=10):
        await stores.schedules.delete(s.namespace, s.trigger)
    assert await stores.schedules.next_due() is None


async def test_a_tick_is_claimed_once_among_concurrent_claimers(stores: Stores) -> None:
    # Given 20 tasks that all claim the same tick, and others claiming another tick
    outcomes: list[bool] = []

    async def claim(key: str) -> None:
        outcomes.append(await stores.schedules.claim(key, 100))

    # When they run at once
    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(claim, "guest/t/1/100")
    # Then exactly one of them won
    assert Counter(outcomes) == {True: 1, False: 19}
    # And a later claim of the same tick still loses, while another tick is free
    assert await stores.schedules.claim("guest/t/1/100", 100) is False
    assert await stores.schedules.claim("guest/t/1/200", 200) is True


async def test_prune_forgets_old_claims_only(stores: Stores) -> None:
    # Given ticks claimed at 100, 200 and 300
    for at in (100, 200, 300):
        assert await stores.schedules.claim(f"k{at}", at)
    # When claims before 250 are pruned
    assert await stores.schedules.prune(250) == 2
    # Then those ticks may be claimed again, the newer one may not
    assert await stores.schedules.claim("k100", 100) is True
    assert await stores.schedules.claim("k300", 300) is False
    assert await stores.schedules.prune(0) == 0


async def test_schedules_and_claims_survive_reopen(
    durable_provider: Provider, tmp_path: Path, clock: FakeClock
) -> None:
    # Given a schedule and a claimed tick, then the store closed
    first = await durable_provider.open(tmp_path, clock)
    stored = await first.schedules.put(NS, "t", {"minutes": 1}, 60_000, None)
    assert await first.schedules.claim("guest/t/x/60000", 60_000)
    await first.close()
    # When it is opened again
    second = await durable_provider.open(tmp_path, clock)
    try:
        # Then the schedule is due as before and the tick stays claimed
        assert await second.schedules.get(NS, "t") == stored
        assert await second.schedules.next_due() == 60_000
        assert await second.schedules.claim("guest/t/x/60000", 60_000) is False
    finally:
        await second.close()


async def test_every_schedule_method_raises_after_close(provider: Provider, tmp_path: Path) -> None:
    stores = await provider.open(tmp_path, FakeClock())
    await stores.close()
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: stores.schedules.put(NS, "t", {}, 1, None),
        lambda: stores.schedules.get(NS, "t"),
        lambda: stores.schedules.delete(NS, "t"),
        lambda: stores.schedules.due(1, 10),
        lambda: stores.schedules.next_due(),
        lambda: stores.schedules.claim("k", 1),
        lambda: stores.schedules.prune(1),
    ]
    for call in calls:
        with pytest.raises(ProviderError, match="store is closed"):
            await call()
