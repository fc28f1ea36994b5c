"""ActivationStore contract: records by id, filtered and paged listing, namespace isolation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from msgspec.structs import replace

from squall.entities.activation import Activation, ActivationResponse, final_record
from squall.errors import NotFound
from squall.store.contracts import ActivationQuery

from .conftest import Stores

pytestmark = pytest.mark.anyio

NS = "guest"


def record(
    activation_id: str,
    start: int,
    *,
    name: str = "hello",
    package: str | None = None,
    namespace: str = NS,
) -> Activation:
    """An activation record shaped like OpenWhisk's, with the ``path`` annotation."""
    path = f"{namespace}/{package}/{name}" if package else f"{namespace}/{name}"
    return final_record(
        namespace=namespace,
        name=name,
        subject=namespace,
        activation_id=activation_id,
        start=start,
        end=start + 3,
        response=ActivationResponse.ok({}),
        annotations=[{"key": "path", "value": path}, {"key": "kind", "value": "python:3"}],
    )


def with_result(r: Activation, result: Any) -> Activation:
    return replace(r, response=replace(r.response, result=result))


def ids(records: list[Activation]) -> list[str]:
    return [r.activation_id for r in records]


async def test_put_then_get_round_trips_the_record(stores: Stores) -> None:
    # Given a stored activation
    original = record("a" * 32, 1000)
    await stores.activations.put(original)
    # When it is fetched by id in its namespace / Then the same record comes back
    fetched = await stores.activations.get(NS, "a" * 32)
    assert fetched == original
    # And it is a fresh dict: mutating it does not change the stored record
    fetched.logs.append("changed")
    assert await stores.activations.get(NS, "a" * 32) == original


async def test_get_missing_or_from_another_namespace_is_not_found(stores: Stores) -> None:
    # Given an activation of namespace "guest"
    await stores.activations.put(record("a" * 32, 1000))
    # When another namespace asks for it / Then NotFound, as for an unknown id
    with pytest.raises(NotFound):
        await stores.activations.get("intruder", "a" * 32)
    with pytest.raises(NotFound):
        await stores.activations.get(NS, "b" * 32)


async def test_put_is_idempotent_and_replaces_by_id(stores: Stores) -> None:
    # Given a record stored twice
    first = record("a" * 32, 1000)
    await stores.activations.put(first)
    await stores.activations.put(first)
    # Then there is one record
    assert await stores.activations.count(ActivationQuery(NS)) == 1
    # When a record with the same id but a new response is put
    replaced = with_result(record("a" * 32, 1000), {"payload": "done"})
    await stores.activations.put(replaced)
    # Then it replaces the first
    assert await stores.activations.get(NS, "a" * 32) == replaced
    assert await stores.activations.count(ActivationQuery(NS)) == 1


def pending(activation_id: str, start: int) -> Activation:
    return replace(record(activation_id, start), response=ActivationResponse.waiting())


async def test_put_pending_never_replaces_a_stored_record(stores: Stores) -> None:
    # Given a pending record for an id nobody wrote yet / Then it is stored
    await stores.activations.put_pending(pending("a" * 32, 1000))
    assert (await stores.activations.get(NS, "a" * 32)).response.status == "pending"
    # When the final record is put / Then it replaces the pending one
    await stores.activations.put(record("a" * 32, 1000))
    assert (await stores.activations.get(NS, "a" * 32)).response.status == "success"
    # When a pending record for it arrives late / Then the final one stays
    await stores.activations.put_pending(pending("a" * 32, 1000))
    assert (await stores.activations.get(NS, "a" * 32)).response.status == "success"
    assert await stores.activations.count(ActivationQuery(NS)) == 1


async def test_final_wins_whatever_the_order_of_concurrent_writes(stores: Stores) -> None:
    # Given a final and a pending write of the same ids issued together, in both orders
    await asyncio.gather(
        stores.activations.put(record("a" * 32, 1000)),
        stores.activations.put_pending(pending("a" * 32, 1000)),
        stores.activations.put_pending(pending("b" * 32, 1000)),
        stores.activations.put(record("b" * 32, 1000)),
    )
    # Then both end as the final record
    for activation_id in ("a" * 32, "b" * 32):
        got = await stores.activations.get(NS, activation_id)
        assert got.response.status == "success"


async def test_list_is_newest_start_first_with_default_limit_30(stores: Stores) -> None:
    # Given 35 activations with increasing start times
    for i in range(35):
        await stores.activations.put(record(f"{i:032x}", 1000 + i))
    # When listing with the default query
    listed = await stores.activations.list(ActivationQuery(NS))
    # Then the 30 newest come back, newest first
    assert ids(listed) == [f"{i:032x}" for i in range(34, 4, -1)]
    # And limit=None lists all of them
    assert len(await stores.activations.list(ActivationQuery(NS, limit=None))) == 35


async def test_list_filters_by_entity_path(stores: Stores) -> None:
    # Given activations of "hello", of "pkg/hello" and of "other"
    await stores.activations.put(record("1" * 32, 1000, name="hello"))
    await stores.activations.put(record("2" * 32, 1001, name="hello", package="pkg"))
    await stores.activations.put(record("3" * 32, 1002, name="other"))
    await stores.activations.put(record("4" * 32, 1003, name="hello"))
    # When filtering by name / Then only exact matches of the entity path
    top = await stores.activations.list(ActivationQuery(NS, name="hello"))
    assert ids(top) == ["4" * 32, "1" * 32]
    in_pkg = await stores.activations.list(ActivationQuery(NS, name="pkg/hello"))
    assert ids(in_pkg) == ["2" * 32]
    assert await stores.activations.list(ActivationQuery(NS, name="hell")) == []
    assert await stores.activations.count(ActivationQuery(NS, name="hello")) == 2


async def test_since_and_upto_are_inclusive_bounds_on_start(stores: Stores) -> None:
    # Given activations started at 1000, 2000, 3000, 4000
    for start in (1000, 2000, 3000, 4000):
        await stores.activations.put(record(f"{start:032x}", start))
    # When bounding by since/upto / Then both ends are included
    window = await stores.activations.list(ActivationQuery(NS, since=2000, upto=3000))
    assert [r.start for r in window] == [3000, 2000]
    since = await stores.activations.list(ActivationQuery(NS, since=3000))
    assert [r.start for r in since] == [4000, 3000]
    upto = await stores.activations.list(ActivationQuery(NS, upto=1999))
    assert [r.start for r in upto] == [1000]
    assert await stores.activations.count(ActivationQuery(NS, since=2000, upto=3000)) == 2
    assert await stores.activations.count(ActivationQuery(NS, since=4001)) == 0


async def test_skip_and_limit_page_and_count_ignores_them(stores: Stores) -> None:
    # Given six activations of one action
    for i in range(6):
        await stores.activations.put(record(f"{i:032x}", 1000 + i))
    # When paging / Then pages follow newest-first order
    page = await stores.activations.list(ActivationQuery(NS, skip=1, limit=2))
    assert [r.start for r in page] == [1004, 1003]
    tail = await stores.activations.list(ActivationQuery(NS, skip=4, limit=None))
    assert [r.start for r in tail] == [1001, 1000]
    assert await stores.activations.list(ActivationQuery(NS, skip=6)) == []
    # And count applies the filters but not skip/limit
    assert await stores.activations.count(ActivationQuery(NS, skip=4, limit=1)) == 6
    filtered = ActivationQuery(NS, since=1002, skip=1, limit=1)
    assert await stores.activations.count(filtered) == 4


async def test_namespaces_are_isolated(stores: Stores) -> None:
    # Given activations in two namespaces, same action name
    await stores.activations.put(record("1" * 32, 1000))
    await stores.activations.put(record("2" * 32, 1001, namespace="other"))
    # When each namespace lists and counts / Then it sees only its own
    assert ids(await stores.activations.list(ActivationQuery(NS))) == ["1" * 32]
    assert ids(await stores.activations.list(ActivationQuery("other"))) == ["2" * 32]
    assert await stores.activations.count(ActivationQuery(NS, name="hello")) == 1
    assert await stores.activations.count(ActivationQuery("nobody")) == 0


def whisk_error(activation_id: str, start: int) -> Activation:
    lost = ActivationResponse.whisk_error("The invoker running this activation was lost.")
    return replace(record(activation_id, start), response=lost)


async def test_put_unless_final_writes_over_nothing_or_pending_only(stores: Stores) -> None:
    # Given no record / When put_unless_final / Then it is stored
    assert await stores.activations.put_unless_final(whisk_error("a" * 32, 1000)) is True
    assert (await stores.activations.get(NS, "a" * 32)).response.status == ("whisk internal error")
    # And once stored it is final: a second error record does not replace it
    again = with_result(whisk_error("a" * 32, 1000), {"error": "second"})
    assert await stores.activations.put_unless_final(again) is False
    assert (await stores.activations.get(NS, "a" * 32)).response.result != {"error": "second"}
    # Given a pending record / When put_unless_final / Then it replaces the pending one
    await stores.activations.put_pending(pending("b" * 32, 1000))
    assert await stores.activations.put_unless_final(whisk_error("b" * 32, 1001)) is True
    assert await stores.activations.get(NS, "b" * 32) == whisk_error("b" * 32, 1001)
    # Given a final record / When put_unless_final / Then the final record stays
    await stores.activations.put(record("c" * 32, 1000))
    assert await stores.activations.put_unless_final(whisk_error("c" * 32, 1000)) is False
    assert await stores.activations.get(NS, "c" * 32) == record("c" * 32, 1000)
    assert await stores.activations.count(ActivationQuery(NS)) == 3


async def test_put_unless_final_never_overwrites_a_final_record_written_concurrently(
    stores: Stores,
) -> None:
    # Given pending records, then for each a final put and an error put issued together,
    # in both orders
    for activation_id in ("a" * 32, "b" * 32):
        await stores.activations.put_pending(pending(activation_id, 1000))
    await asyncio.gather(
        stores.activations.put_unless_final(whisk_error("a" * 32, 1000)),
        stores.activations.put(record("a" * 32, 1000)),
        stores.activations.put(record("b" * 32, 1000)),
        stores.activations.put_unless_final(whisk_error("b" * 32, 1000)),
    )
    # Then both end as the final record, whoever was applied first
    for activation_id in ("a" * 32, "b" * 32):
        assert await stores.activations.get(NS, activation_id) == record(activation_id, 1000)


async def test_put_unless_final_over_a_pending_put_of_the_same_moment(stores: Stores) -> None:
    # Given a pending put and an error put of a new id issued together
    await asyncio.gather(
        stores.activations.put_pending(pending("a" * 32, 1000)),
        stores.activations.put_unless_final(whisk_error("a" * 32, 1000)),
    )
    # Then the error record is what stays: a pending record never hides another one
    assert await stores.activations.get(NS, "a" * 32) == whisk_error("a" * 32, 1000)


async def test_prune_deletes_records_started_before_the_bound(stores: Stores) -> None:
    # Given records of two namespaces started at 1000..1004, one of them still pending
    for i in range(4):
        await stores.activations.put(record(f"{i:032x}", 1000 + i))
    await stores.activations.put(record("e" * 32, 1001, namespace="other"))
    await stores.activations.put_pending(pending("f" * 32, 1004))
    # When pruning before 1002
    removed = await stores.activations.prune(1002)
    # Then the records started at 1000 and 1001 are gone, in every namespace, and the
    # bound itself is kept
    assert removed == 3
    assert [r.start for r in await stores.activations.list(ActivationQuery(NS))] == [
        1004,
        1003,
        1002,
    ]
    assert await stores.activations.count(ActivationQuery("other")) == 0
    with pytest.raises(NotFound):
        await stores.activations.get(NS, f"{0:032x}")
    # And pruning again removes nothing
    assert await stores.activations.prune(1002) == 0


async def test_prune_goes_on_batch_after_batch(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given batches of two rows (so that five old records take three batches)
    from squall.store import postgres_activations, sqlite_activations

    monkeypatch.setattr(sqlite_activations, "PRUNE_BATCH", 2)
    monkeypatch.setattr(postgres_activations, "PRUNE_BATCH", 2)
    for i in range(6):
        await stores.activations.put(record(f"{i:032x}", 1000 + i))
    # When pruning before 1005 / Then all five are deleted and counted
    assert await stores.activations.prune(1005) == 5
    assert ids(await stores.activations.list(ActivationQuery(NS))) == [f"{5:032x}"]


async def test_unfinished_records_are_listed_paged_and_counted_among_final_ones(
    stores: Stores,
) -> None:
    # Given final records started at 1000, 1002 and 1005, a queued one at 1001, a
    # started one at 1004 (the mark of a blocking invoke) and one queued, then started,
    # at 1003 — of which 1002 and 1004 are of pkg/hello
    await stores.activations.put(record("0" * 32, 1000))
    await stores.activations.put_pending(pending("1" * 32, 1001))
    await stores.activations.put(record("2" * 32, 1002, package="pkg"))
    await stores.activations.put_pending(pending("3" * 32, 1003))
    assert await stores.activations.start(pending("3" * 32, 1003))
    started = replace(record("4" * 32, 1004, package="pkg"), response=ActivationResponse.waiting())
    assert await stores.activations.start(started)
    await stores.activations.put(record("5" * 32, 1005))
    # When listing / Then every record is there, newest first, whatever its state
    listed = await stores.activations.list(ActivationQuery(NS))
    assert [r.start for r in listed] == [1005, 1004, 1003, 1002, 1001, 1000]
    assert [r.response.status for r in listed][:3] == ["success", "pending", "pending"]
    # And pages run across both kinds in the same order
    page = await stores.activations.list(ActivationQuery(NS, skip=1, limit=3))
    assert [r.start for r in page] == [1004, 1003, 1002]
    window = ActivationQuery(NS, since=1001, upto=1004)
    assert [r.start for r in await stores.activations.list(window)] == [1004, 1003, 1002, 1001]
    # And the name filter, count and get see the unfinished ones too
    in_pkg = await stores.activations.list(ActivationQuery(NS, name="pkg/hello"))
    assert [r.start for r in in_pkg] == [1004, 1002]
    assert await stores.activations.count(ActivationQuery(NS)) == 6
    assert await stores.activations.count(window) == 4
    assert await stores.activations.count(ActivationQuery(NS, name="pkg/hello")) == 2
    assert (await stores.activations.get(NS, "4" * 32)).response.status == "pending"
    # When the started one ends / Then it is listed once, final, in the same place
    await stores.activations.put(record("4" * 32, 1004, package="pkg"))
    listed = await stores.activations.list(ActivationQuery(NS))
    assert [(r.start, r.response.status) for r in listed][:2] == [
        (1005, "success"),
        (1004, "success"),
    ]
    assert await stores.activations.count(ActivationQuery(NS)) == 6


async def test_prune_reaches_every_namespace_and_the_unfinished_records(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given batches of two rows, and in three namespaces old and new final records plus
    # an old queued and an old started record
    from squall.store import postgres_activations, sqlite_activations

    monkeypatch.setattr(sqlite_activations, "PRUNE_BATCH", 2)
    monkeypatch.setattr(postgres_activations, "PRUNE_BATCH", 2)
    for n, namespace in enumerate(("alpha", "beta", "gamma")):
        for i in range(3):
            await stores.activations.put(
                record(f"{n}{i}".ljust(32, "0"), 1000 + i, namespace=namespace)
            )
        await stores.activations.put(record(f"{n}9".ljust(32, "0"), 2000, namespace=namespace))
    await stores.activations.put_pending(pending("q" * 32, 1000))
    assert await stores.activations.start(pending("s" * 32, 1001))
    # When pruning before 1500 / Then the nine old final records and both unfinished
    # ones are deleted, and the new one of each namespace is kept
    assert await stores.activations.prune(1500) == 11
    for namespace in ("alpha", "beta", "gamma"):
        assert [r.start for r in await stores.activations.list(ActivationQuery(namespace))] == [
            2000
        ]
    assert await stores.activations.count(ActivationQuery(NS)) == 0
    assert await stores.activations.unfinished("", 10) == []


async def test_records_round_trip_exactly(stores: Stores) -> None:
    # Given a record whose result has keys out of order and strings with NUL and
    # non-ASCII characters, and logs with them too
    original = with_result(
        record("a" * 32, 1000), {"zeta": 1, "alpha": "\u0000 ok", "mid": "é 🎉", "n": 1.5}
    )
    original.logs = ["2024-01-01T00:00:00Z stdout: \u0000"]
    await stores.activations.put_pending(pending("a" * 32, 1000))
    assert await stores.activations.put_unless_final(original) is True
    # When fetched / Then equal, with the same key order
    fetched = await stores.activations.get(NS, "a" * 32)
    assert fetched == original
    assert list(fetched.response.result) == ["zeta", "alpha", "mid", "n"]
