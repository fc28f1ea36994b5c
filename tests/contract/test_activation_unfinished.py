"""ActivationStore contract, crash recovery: the message kept with a pending record, the
started point (``start``) and the unfinished records a restart must end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from squall.store.contracts import Unfinished

from .conftest import FakeClock, Provider, Stores
from .test_activation_store import NS, pending, record, whisk_error

pytestmark = pytest.mark.anyio

A, B, C, D = "a" * 32, "b" * 32, "c" * 32, "d" * 32


async def unfinished(stores: Stores) -> dict[str, Unfinished]:
    return {u.record.activation_id: u for u in await stores.activations.unfinished("", 100)}


async def test_a_pending_record_is_unfinished_with_its_message_until_it_ends(
    stores: Stores,
) -> None:
    # Given a pending record written with the message that runs it
    await stores.activations.put_pending(pending(A, 1000), b"run me")
    # Then it is unfinished, not started, with that message — and the record itself
    # does not hold the message
    listed = await unfinished(stores)
    assert listed == {A: Unfinished(pending(A, 1000), False, b"run me")}
    assert await stores.activations.get(NS, A) == pending(A, 1000)
    # When its final record is put / Then it is no longer unfinished
    await stores.activations.put(record(A, 1000))
    assert await unfinished(stores) == {}


async def test_start_claims_a_queued_record_once_and_drops_its_message(stores: Stores) -> None:
    # Given a queued record
    await stores.activations.put_pending(pending(A, 1000), b"run me")
    # When two runs try to start it at once
    first, second = await asyncio.gather(
        stores.activations.start(pending(A, 1000)), stores.activations.start(pending(A, 1000))
    )
    # Then exactly one may run it, and it is unfinished as started, without its message
    assert sorted([first, second]) == [False, True]
    assert await unfinished(stores) == {A: Unfinished(pending(A, 1000), True, None)}
    # And a later start is refused too
    assert await stores.activations.start(pending(A, 1000)) is False


async def test_start_stores_an_unknown_activation_as_started(stores: Stores) -> None:
    # Given no record of an id (a blocking activation has none until it starts)
    # When it starts / Then its pending record is stored, started
    assert await stores.activations.start(pending(A, 1000)) is True
    assert await stores.activations.get(NS, A) == pending(A, 1000)
    assert await unfinished(stores) == {A: Unfinished(pending(A, 1000), True, None)}
    # And a pending record written afterwards (its caller's 202) changes nothing
    await stores.activations.put_pending(pending(A, 1000), b"late")
    assert await unfinished(stores) == {A: Unfinished(pending(A, 1000), True, None)}


async def test_a_final_record_is_never_started(stores: Stores) -> None:
    # Given a final record, and a record ended as an error over its pending one
    await stores.activations.put(record(A, 1000))
    await stores.activations.put_pending(pending(B, 1000), b"run me")
    assert await stores.activations.put_unless_final(whisk_error(B, 1001)) is True
    # When runs try to start them / Then both are refused and nothing changes
    assert await stores.activations.start(pending(A, 1000)) is False
    assert await stores.activations.start(pending(B, 1000)) is False
    assert await stores.activations.get(NS, A) == record(A, 1000)
    assert await stores.activations.get(NS, B) == whisk_error(B, 1001)
    assert await unfinished(stores) == {}


async def test_a_started_record_ends_by_put_unless_final(stores: Stores) -> None:
    # Given a started record
    assert await stores.activations.start(pending(A, 1000)) is True
    # When it is ended as an error unless final / Then that is stored and it is finished
    assert await stores.activations.put_unless_final(whisk_error(A, 1001)) is True
    assert await unfinished(stores) == {}


async def test_unfinished_pages_by_activation_id(stores: Stores) -> None:
    # Given unfinished records of every kind and a final one
    await stores.activations.put_pending(pending(D, 1000), b"d")
    await stores.activations.put_pending(pending(B, 1000))  # nothing to run it with
    assert await stores.activations.start(pending(C, 1000)) is True
    await stores.activations.put(record(A, 1000))
    # When listed two at a time / Then by id, after the given one, without the final one
    page = await stores.activations.unfinished("", 2)
    assert [(u.record.activation_id, u.started, u.message) for u in page] == [
        (B, False, None),
        (C, True, None),
    ]
    rest = await stores.activations.unfinished(C, 2)
    assert [(u.record.activation_id, u.started, u.message) for u in rest] == [(D, False, b"d")]


async def test_an_owned_record_keeps_its_owner_until_it_ends(stores: Stores) -> None:
    # Given records owned by two incarnations of controller 1, one of controller 10
    # (whose id begins with "1" too, and an owner with LIKE's wildcards), and one of nobody
    await stores.activations.put_pending(pending(A, 1000), b"a", owner="1/old")
    await stores.activations.put_pending(pending(B, 1000), b"b", owner="1/new")
    await stores.activations.put_pending(pending(C, 1000), b"c", owner="10/%_")
    await stores.activations.put_pending(pending(D, 1000), b"d")
    # When one of controller 1's is started / Then it keeps its owner
    assert await stores.activations.start(pending(A, 1000)) is True
    # And listing by owner finds controller 1's only, started or not, with their owners
    owned = await stores.activations.unfinished("", 10, owned_by="1/")
    assert owned == [
        Unfinished(pending(A, 1000), True, None, "1/old"),
        Unfinished(pending(B, 1000), False, b"b", "1/new"),
    ]
    # And the full list still has every one, owned or not
    listed = await unfinished(stores)
    assert {i: u.owner for i, u in listed.items()} == {A: "1/old", B: "1/new", C: "10/%_", D: None}
    # And pages by owner continue after the given id
    assert [u.record.activation_id for u in await stores.activations.unfinished(A, 10, "1/")] == [B]
    # When one ends / Then it leaves the owner's list
    assert await stores.activations.put_unless_final(whisk_error(A, 1001)) is True
    left = await stores.activations.unfinished("", 10, "1/")
    assert [u.record.activation_id for u in left] == [B]


async def test_unfinished_records_survive_a_reopen(
    durable_provider: Provider, tmp_path: Path, clock: FakeClock
) -> None:
    # Given a queued and a started record written by a store that is then closed
    first = await durable_provider.open(tmp_path, clock)
    await first.activations.put_pending(pending(A, 1000), b"\x00binary\xff")
    assert await first.activations.start(pending(B, 1000)) is True
    await first.close()
    # When the store is opened again / Then both are unfinished as they were
    second = await durable_provider.open(tmp_path, clock)
    try:
        assert await unfinished(second) == {
            A: Unfinished(pending(A, 1000), False, b"\x00binary\xff"),
            B: Unfinished(pending(B, 1000), True, None),
        }
    finally:
        await second.close()


async def test_many_writes_at_once_each_get_their_own_answer(stores: Stores) -> None:
    # Given 20 activations, half queued; When each is started at once, with the final
    # records of others and late pending ones in the same instant (one group commit)
    queued = [f"{i:032x}" for i in range(1, 11)]
    unknown = [f"{i:032x}" for i in range(11, 21)]
    for activation_id in queued:
        await stores.activations.put_pending(pending(activation_id, 1000), b"run me")
    ended = [f"{i:032x}" for i in range(21, 26)]
    answers = await asyncio.gather(
        *(stores.activations.start(pending(a, 1000)) for a in queued + unknown),
        *(stores.activations.put(record(a, 1000)) for a in ended),
        *(stores.activations.put_pending(pending(a, 1000)) for a in ended),
    )
    # Then every start was granted, the final records stay final, and a second round
    # of starts (again all at once) is refused for every one
    assert answers[:20] == [True] * 20
    for activation_id in ended:
        assert (await stores.activations.get(NS, activation_id)).response.status == "success"
    again = await asyncio.gather(*(stores.activations.start(pending(a, 1000)) for a in queued))
    assert again == [False] * 10
    assert {a for a, u in (await unfinished(stores)).items() if u.started} == set(queued + unknown)
