"""EntityStore contract: revisions, conflicts, deletion, ordered and paged listing."""

from __future__ import annotations

import pytest

from squall.errors import Conflict, NotFound
from squall.store.contracts import Document

from .conftest import FakeClock, Stores

pytestmark = pytest.mark.anyio

NS = "guest"
STALE = "Concurrent modification to resource detected."


async def test_create_then_get_returns_the_stored_document(
    stores: Stores, clock: FakeClock
) -> None:
    # Given an empty namespace
    # When an action is created
    created = await stores.entities.put(NS, "actions", "hello", {"version": "0.0.1"}, None)
    # Then the stored document comes back with a revision and the write time
    assert created.body == {"version": "0.0.1"}
    assert created.rev
    assert created.updated == clock()
    assert await stores.entities.get(NS, "actions", "hello") == created


async def test_returned_bodies_are_fresh_dicts(stores: Stores) -> None:
    # Given a body the caller keeps a reference to
    body = {"parameters": [{"key": "a", "value": 1}]}
    created = await stores.entities.put(NS, "actions", "hello", body, None)
    # When the caller mutates its body and the returned ones
    body["parameters"].append({"key": "b", "value": 2})
    created.body["parameters"].clear()
    (await stores.entities.get(NS, "actions", "hello")).body["extra"] = True
    # Then the stored document is unchanged
    fetched = await stores.entities.get(NS, "actions", "hello")
    assert fetched.body == {"parameters": [{"key": "a", "value": 1}]}


async def test_get_missing_raises_not_found(stores: Stores) -> None:
    # Given nothing stored / When getting a document / Then NotFound
    with pytest.raises(NotFound):
        await stores.entities.get(NS, "actions", "nope")


async def test_update_with_current_revision_replaces_and_bumps_revision(
    stores: Stores, clock: FakeClock
) -> None:
    # Given an existing action
    first = await stores.entities.put(NS, "actions", "hello", {"v": 1}, None)
    clock.advance(5)
    # When it is written with its current revision
    second = await stores.entities.put(NS, "actions", "hello", {"v": 2}, first.rev)
    # Then the body is replaced, the revision and the update time move on
    assert second.rev != first.rev
    assert second.updated == first.updated + 5
    assert await stores.entities.get(NS, "actions", "hello") == second


async def test_update_with_stale_revision_conflicts_and_changes_nothing(stores: Stores) -> None:
    # Given an action updated once, so its first revision is stale
    first = await stores.entities.put(NS, "actions", "hello", {"v": 1}, None)
    second = await stores.entities.put(NS, "actions", "hello", {"v": 2}, first.rev)
    # When a writer still holding the first revision writes
    with pytest.raises(Conflict) as caught:
        await stores.entities.put(NS, "actions", "hello", {"v": 3}, first.rev)
    # Then it gets OpenWhisk's conflict message and the document is untouched
    assert caught.value.message == STALE
    assert await stores.entities.get(NS, "actions", "hello") == second


async def test_rewrite_keeps_revision_and_update_time_and_conflicts_when_stale(
    stores: Stores, clock: FakeClock
) -> None:
    # Given an action written twice, so its first revision is stale
    first = await stores.entities.put(NS, "actions", "hello", {"v": 1}, None)
    clock.advance(5)
    second = await stores.entities.put(NS, "actions", "hello", {"v": 2}, first.rev)
    clock.advance(5)
    # When its body is rewritten at the current revision (a re-encryption)
    rewritten = await stores.entities.rewrite(NS, "actions", "hello", {"v": "2"}, second.rev)
    # Then the body changes, the revision and the update time stay
    assert (rewritten.rev, rewritten.updated, rewritten.body) == (
        second.rev,
        second.updated,
        {"v": "2"},
    )
    assert await stores.entities.get(NS, "actions", "hello") == rewritten
    # And a rewrite at a stale revision, or of a deleted document, conflicts
    with pytest.raises(Conflict) as caught:
        await stores.entities.rewrite(NS, "actions", "hello", {"v": 3}, first.rev)
    assert caught.value.message == STALE
    await stores.entities.delete(NS, "actions", "hello")
    with pytest.raises(Conflict):
        await stores.entities.rewrite(NS, "actions", "hello", {"v": 4}, second.rev)
    # And the rewritten revision still replaces, moving the revision on
    recreated = await stores.entities.put(NS, "actions", "hello", {"v": 5}, None)
    assert await stores.entities.rewrite(NS, "actions", "hello", {}, recreated.rev)
    assert (await stores.entities.put(NS, "actions", "hello", {}, recreated.rev)).rev != (
        recreated.rev
    )


async def test_update_of_missing_document_conflicts(stores: Stores) -> None:
    # Given a revision of a document that was deleted
    first = await stores.entities.put(NS, "actions", "hello", {"v": 1}, None)
    await stores.entities.delete(NS, "actions", "hello")
    # When writing with that revision / Then it is stale: Conflict, and nothing is created
    with pytest.raises(Conflict):
        await stores.entities.put(NS, "actions", "hello", {"v": 2}, first.rev)
    with pytest.raises(NotFound):
        await stores.entities.get(NS, "actions", "hello")


async def test_create_twice_conflicts(stores: Stores) -> None:
    # Given an existing action
    first = await stores.entities.put(NS, "actions", "hello", {"v": 1}, None)
    # When it is created again without a revision
    with pytest.raises(Conflict) as caught:
        await stores.entities.put(NS, "actions", "hello", {"v": 2}, None)
    # Then "resource already exists" and the first one stays
    assert caught.value.message == "resource already exists"
    assert await stores.entities.get(NS, "actions", "hello") == first


async def test_documents_are_keyed_by_namespace_collection_and_name(stores: Stores) -> None:
    # Given the same name in two namespaces and two collections
    a = await stores.entities.put(NS, "actions", "x", {"a": 1}, None)
    b = await stores.entities.put("other", "actions", "x", {"b": 1}, None)
    c = await stores.entities.put(NS, "triggers", "x", {"c": 1}, None)
    # Then each is its own document
    assert await stores.entities.get(NS, "actions", "x") == a
    assert await stores.entities.get("other", "actions", "x") == b
    assert await stores.entities.get(NS, "triggers", "x") == c
    # And deleting one leaves the others
    await stores.entities.delete(NS, "actions", "x")
    assert await stores.entities.count("other", "actions") == 1
    assert await stores.entities.count(NS, "triggers") == 1


async def test_delete_returns_the_deleted_document(stores: Stores) -> None:
    # Given an action
    created = await stores.entities.put(NS, "actions", "hello", {"v": 1}, None)
    # When it is deleted without a revision
    deleted = await stores.entities.delete(NS, "actions", "hello")
    # Then the deleted document is returned and it is gone
    assert deleted == created
    with pytest.raises(NotFound):
        await stores.entities.get(NS, "actions", "hello")
    # And deleting again is NotFound
    with pytest.raises(NotFound):
        await stores.entities.delete(NS, "actions", "hello")


async def test_delete_with_stale_revision_conflicts(stores: Stores) -> None:
    # Given an action updated after a reader saw its first revision
    first = await stores.entities.put(NS, "actions", "hello", {"v": 1}, None)
    second = await stores.entities.put(NS, "actions", "hello", {"v": 2}, first.rev)
    # When deleting with the stale revision / Then Conflict and it stays
    with pytest.raises(Conflict):
        await stores.entities.delete(NS, "actions", "hello", first.rev)
    assert await stores.entities.get(NS, "actions", "hello") == second
    # When deleting with the current revision / Then it is deleted
    assert await stores.entities.delete(NS, "actions", "hello", second.rev) == second
    assert await stores.entities.count(NS, "actions") == 0


async def _put_at(stores: Stores, clock: FakeClock, name: str, at: int) -> Document:
    clock.now = at
    return await stores.entities.put(NS, "actions", name, {"name": name}, None)


async def test_list_is_newest_updated_first_then_by_name(stores: Stores, clock: FakeClock) -> None:
    # Given actions written at different times, two of them at the same time
    await _put_at(stores, clock, "old", 1000)
    await _put_at(stores, clock, "b-same", 2000)
    await _put_at(stores, clock, "a-same", 2000)
    await _put_at(stores, clock, "new", 3000)
    # When listing / Then newest first, ties by name
    listed = await stores.entities.list(NS, "actions")
    assert [d.name for d in listed] == ["new", "a-same", "b-same", "old"]
    assert [d.body for d in listed] == [{"name": d.name} for d in listed]
    # When the oldest is updated later / Then it moves to the front
    old = await stores.entities.get(NS, "actions", "old")
    clock.now = 4000
    await stores.entities.put(NS, "actions", "old", {"name": "old"}, old.rev)
    listed = await stores.entities.list(NS, "actions")
    assert [d.name for d in listed] == ["old", "new", "a-same", "b-same"]


async def test_list_pages_with_skip_and_limit(stores: Stores, clock: FakeClock) -> None:
    # Given five actions, a0 oldest .. a4 newest
    for i in range(5):
        await _put_at(stores, clock, f"a{i}", 1000 + i)
    # When paging / Then pages follow the list order
    assert [d.name for d in await stores.entities.list(NS, "actions", limit=2)] == ["a4", "a3"]
    page = await stores.entities.list(NS, "actions", skip=2, limit=2)
    assert [d.name for d in page] == ["a2", "a1"]
    rest = await stores.entities.list(NS, "actions", skip=3, limit=None)
    assert [d.name for d in rest] == ["a1", "a0"]
    assert await stores.entities.list(NS, "actions", skip=5) == []
    assert await stores.entities.list(NS, "actions", limit=0) == []


async def test_list_and_count_filter_by_package(stores: Stores, clock: FakeClock) -> None:
    # Given top-level actions and actions in two packages, plus another namespace
    await _put_at(stores, clock, "top", 1000)
    await _put_at(stores, clock, "pkg/a", 1001)
    await _put_at(stores, clock, "pkg/b", 1002)
    await _put_at(stores, clock, "other/c", 1003)
    await stores.entities.put("someone-else", "actions", "pkg/z", {}, None)
    # When listing the whole namespace / Then everything in it, newest first
    everything = await stores.entities.list(NS, "actions")
    assert [d.name for d in everything] == ["other/c", "pkg/b", "pkg/a", "top"]
    assert [d.package for d in everything] == ["other", "pkg", "pkg", ""]
    # When listing top level only / Then only entities outside packages
    assert [d.name for d in await stores.entities.list(NS, "actions", package="")] == ["top"]
    # When listing one package / Then only its entities
    in_pkg = await stores.entities.list(NS, "actions", package="pkg")
    assert [d.name for d in in_pkg] == ["pkg/b", "pkg/a"]
    assert await stores.entities.list(NS, "actions", package="missing") == []
    # And count applies the same filter
    assert await stores.entities.count(NS, "actions") == 4
    assert await stores.entities.count(NS, "actions", package="") == 1
    assert await stores.entities.count(NS, "actions", package="pkg") == 2
    assert await stores.entities.count(NS, "rules") == 0


async def test_bodies_round_trip_exactly(stores: Stores) -> None:
    # Given a body with keys out of order, a NUL character, non-ASCII text, big and
    # fractional numbers
    body = {
        "zeta": {"b": 1, "a": 2},
        "parameters": [{"key": "nul", "value": "a\u0000b"}],
        "text": "héllo 🎉",
        "big": 2**62,
        "ratio": 0.1,
    }
    # When stored and read back
    await stores.entities.put(NS, "actions", "exact", body, None)
    fetched = await stores.entities.get(NS, "actions", "exact")
    # Then it is equal, with the same key order at every level
    assert fetched.body == body
    assert list(fetched.body) == list(body)
    assert list(fetched.body["zeta"]) == ["b", "a"]
