"""AuthStore contract: subjects, uuid:key authentication, key rotation, limits."""

from __future__ import annotations

import string

import pytest

from squall.errors import Conflict, NotFound
from squall.store.contracts import Subject

from .conftest import Stores

pytestmark = pytest.mark.anyio

UUID = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502"
KEY = "123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"


async def test_create_generates_credentials_that_authenticate(stores: Stores) -> None:
    # Given no subjects
    # When a subject is created without uuid or key
    created = await stores.auth.create_subject("guest")
    # Then a uuid and a 64-character alphanumeric key are generated and returned once
    assert created.namespace == "guest"
    assert created.uuid
    assert created.key is not None
    assert len(created.key) == 64
    assert set(created.key) <= set(string.ascii_letters + string.digits)
    # And uuid:key authenticates as that namespace (the key is not handed back)
    authenticated = await stores.auth.authenticate(created.uuid, created.key)
    assert authenticated == Subject("guest", created.uuid)


async def test_create_with_given_credentials(stores: Stores) -> None:
    # Given explicit credentials
    created = await stores.auth.create_subject("guest", uuid=UUID, key=KEY)
    # Then they are used as given
    assert created == Subject("guest", UUID, KEY)
    assert created.auth == f"{UUID}:{KEY}"
    assert await stores.auth.authenticate(UUID, KEY) == Subject("guest", UUID)


async def test_wrong_key_and_unknown_uuid_are_both_rejected(stores: Stores) -> None:
    # Given a subject
    await stores.auth.create_subject("guest", uuid=UUID, key=KEY)
    # When the key is wrong, a prefix, empty, or the uuid unknown / Then None each time
    assert await stores.auth.authenticate(UUID, KEY[:-1] + "x") is None
    assert await stores.auth.authenticate(UUID, KEY[:32]) is None
    assert await stores.auth.authenticate(UUID, "") is None
    assert await stores.auth.authenticate("00000000-0000-4000-8000-000000000000", KEY) is None


async def test_create_existing_namespace_conflicts(stores: Stores) -> None:
    # Given a subject
    await stores.auth.create_subject("guest", uuid=UUID, key=KEY)
    # When the namespace is created again without rotate / Then Conflict, old key still works
    with pytest.raises(Conflict):
        await stores.auth.create_subject("guest")
    assert await stores.auth.authenticate(UUID, KEY) is not None


async def test_uuid_of_another_namespace_conflicts(stores: Stores) -> None:
    # Given a subject with a uuid
    await stores.auth.create_subject("guest", uuid=UUID, key=KEY)
    # When another namespace is created with the same uuid / Then Conflict
    with pytest.raises(Conflict):
        await stores.auth.create_subject("other", uuid=UUID)
    with pytest.raises(NotFound):
        await stores.auth.get_subject("other")


async def test_rotate_replaces_the_key_at_once(stores: Stores) -> None:
    # Given a subject with limits
    await stores.auth.create_subject("guest", uuid=UUID, key=KEY)
    await stores.auth.set_limits("guest", {"invocationsPerMinute": 5})
    # When its key is rotated
    rotated = await stores.auth.create_subject("guest", rotate=True)
    # Then the uuid stays, the new key works, the old one stops working, limits stay
    assert rotated.uuid == UUID
    assert rotated.key is not None
    assert rotated.key != KEY
    assert await stores.auth.authenticate(UUID, rotated.key) == Subject("guest", UUID)
    assert await stores.auth.authenticate(UUID, KEY) is None
    assert await stores.auth.get_limits("guest") == {"invocationsPerMinute": 5}


async def test_rotate_of_a_new_namespace_creates_it(stores: Stores) -> None:
    # Given no subject / When rotating / Then it is simply created
    created = await stores.auth.create_subject("guest", key=KEY, rotate=True)
    assert await stores.auth.authenticate(created.uuid, KEY) == Subject("guest", created.uuid)


async def test_get_and_list_subjects_never_carry_keys(stores: Stores) -> None:
    # Given two subjects
    b = await stores.auth.create_subject("bravo")
    a = await stores.auth.create_subject("alpha")
    # When reading them back / Then without keys, listed by namespace
    assert await stores.auth.get_subject("bravo") == Subject("bravo", b.uuid)
    assert await stores.auth.list_subjects() == [Subject("alpha", a.uuid), Subject("bravo", b.uuid)]
    # And a missing one is NotFound
    with pytest.raises(NotFound):
        await stores.auth.get_subject("charlie")


async def test_delete_removes_credentials_and_limits(stores: Stores) -> None:
    # Given a subject with limits
    await stores.auth.create_subject("guest", uuid=UUID, key=KEY)
    await stores.auth.set_limits("guest", {"concurrentInvocations": 2})
    # When it is deleted
    await stores.auth.delete_subject("guest")
    # Then its key, its limits and the subject are gone
    assert await stores.auth.authenticate(UUID, KEY) is None
    assert await stores.auth.get_limits("guest") == {}
    with pytest.raises(NotFound):
        await stores.auth.get_subject("guest")
    assert await stores.auth.list_subjects() == []
    # And deleting again is NotFound
    with pytest.raises(NotFound):
        await stores.auth.delete_subject("guest")
    # And the namespace can be created afresh with the same uuid
    await stores.auth.create_subject("guest", uuid=UUID, key=KEY)
    assert await stores.auth.get_limits("guest") == {}


async def test_limits_round_trip(stores: Stores) -> None:
    # Given a subject without limits / Then its limits are empty
    await stores.auth.create_subject("guest")
    assert await stores.auth.get_limits("guest") == {}
    # When limits are set and replaced / Then the last object is returned as set
    limits = {"invocationsPerMinute": 10, "firesPerMinute": 3}
    await stores.auth.set_limits("guest", limits)
    assert await stores.auth.get_limits("guest") == limits
    await stores.auth.set_limits("guest", {"concurrentInvocations": 1})
    limits = await stores.auth.get_limits("guest")
    assert limits == {"concurrentInvocations": 1}
    # And the returned dict is the caller's to mutate
    limits["concurrentInvocations"] = 99
    assert await stores.auth.get_limits("guest") == {"concurrentInvocations": 1}


async def test_limits_of_unknown_namespace(stores: Stores) -> None:
    # Given no subject "ghost"
    # Then its limits read as {} (contract), and setting them is NotFound (limits belong
    # to a subject, so deleting the subject can remove them)
    assert await stores.auth.get_limits("ghost") == {}
    with pytest.raises(NotFound):
        await stores.auth.set_limits("ghost", {"invocationsPerMinute": 1})


# -- action keys ------------------------------------------------------------------------

ACTION_UUID = "6f1c2a9e-8b3d-4c57-9e0a-2d4f6b8c1e3a"
ACTION_KEY = "Ak" * 32
OTHER_UUID = "0b7e5d3c-1a2f-4e6d-8c9b-7a5f3e1d2c4b"


async def test_action_key_authenticates_as_its_namespace(stores: Stores) -> None:
    # Given a subject without an action key
    await stores.auth.create_subject("guest", uuid=UUID, key=KEY)
    assert await stores.auth.get_action_key("guest") is None
    # When an action key is added
    stored = await stores.auth.add_action_key("guest", ACTION_UUID, ACTION_KEY)
    # Then its uuid is stored and returned, and uuid:key authenticates as the namespace
    assert stored == ACTION_UUID
    assert await stores.auth.get_action_key("guest") == ACTION_UUID
    assert await stores.auth.authenticate(ACTION_UUID, ACTION_KEY) == Subject("guest", ACTION_UUID)
    # And the subject's own key still works, and neither key works with the other's uuid
    assert await stores.auth.authenticate(UUID, KEY) == Subject("guest", UUID)
    assert await stores.auth.authenticate(UUID, ACTION_KEY) is None
    assert await stores.auth.authenticate(ACTION_UUID, KEY) is None
    # And a wrong, prefix or empty key is rejected like any other
    assert await stores.auth.authenticate(ACTION_UUID, ACTION_KEY[:-1] + "x") is None
    assert await stores.auth.authenticate(ACTION_UUID, ACTION_KEY[:32]) is None
    assert await stores.auth.authenticate(ACTION_UUID, "") is None
    # And it is not a subject of its own
    assert await stores.auth.list_subjects() == [Subject("guest", UUID)]


async def test_second_action_key_keeps_the_first(stores: Stores) -> None:
    # Given a namespace with an action key
    await stores.auth.create_subject("guest")
    await stores.auth.add_action_key("guest", ACTION_UUID, ACTION_KEY)
    # When another one is added (an invoker that lost a race)
    stored = await stores.auth.add_action_key("guest", OTHER_UUID, "Bk" * 32)
    # Then the first one stays and its uuid is answered; the loser's key never works
    assert stored == ACTION_UUID
    assert await stores.auth.get_action_key("guest") == ACTION_UUID
    assert await stores.auth.authenticate(OTHER_UUID, "Bk" * 32) is None
    assert await stores.auth.authenticate(ACTION_UUID, ACTION_KEY) is not None


async def test_concurrent_action_key_adds_agree_on_one(stores: Stores) -> None:
    # Given a subject / When many adders race with different uuids
    import asyncio

    await stores.auth.create_subject("guest")
    uuids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(8)]
    answers = await asyncio.gather(
        *(stores.auth.add_action_key("guest", u, f"{n}" * 64) for n, u in enumerate(uuids))
    )
    # Then every adder is answered the one uuid that was stored, and only its key works
    winner = await stores.auth.get_action_key("guest")
    assert winner in uuids
    assert answers == [winner] * len(uuids)
    for n, u in enumerate(uuids):
        assert (await stores.auth.authenticate(u, f"{n}" * 64) is not None) == (u == winner)


async def test_action_key_needs_a_subject(stores: Stores) -> None:
    # Given no subject "ghost" / When an action key is added for it
    # Then nothing is stored and None is answered
    assert await stores.auth.add_action_key("ghost", ACTION_UUID, ACTION_KEY) is None
    assert await stores.auth.get_action_key("ghost") is None
    assert await stores.auth.authenticate(ACTION_UUID, ACTION_KEY) is None


async def test_action_key_uuid_of_another_namespace_conflicts(stores: Stores) -> None:
    # Given a namespace with an action key
    await stores.auth.create_subject("alpha")
    await stores.auth.create_subject("bravo")
    await stores.auth.add_action_key("alpha", ACTION_UUID, ACTION_KEY)
    # When another namespace adds one with the same uuid / Then Conflict, nothing stored
    with pytest.raises(Conflict):
        await stores.auth.add_action_key("bravo", ACTION_UUID, "Bk" * 32)
    assert await stores.auth.get_action_key("bravo") is None
    assert await stores.auth.authenticate(ACTION_UUID, ACTION_KEY) == Subject("alpha", ACTION_UUID)


async def test_deleting_the_action_key_refuses_it_at_once(stores: Stores) -> None:
    # Given a namespace with an action key
    await stores.auth.create_subject("guest", uuid=UUID, key=KEY)
    await stores.auth.add_action_key("guest", ACTION_UUID, ACTION_KEY)
    # When it is deleted / Then True, its key is refused, the subject's key still works
    assert await stores.auth.delete_action_key("guest") is True
    assert await stores.auth.authenticate(ACTION_UUID, ACTION_KEY) is None
    assert await stores.auth.get_action_key("guest") is None
    assert await stores.auth.authenticate(UUID, KEY) is not None
    # And deleting again answers False
    assert await stores.auth.delete_action_key("guest") is False
    # And a new one can be added
    assert await stores.auth.add_action_key("guest", OTHER_UUID, "Bk" * 32) == OTHER_UUID


async def test_rotation_keeps_and_deletion_removes_the_action_key(stores: Stores) -> None:
    # Given a namespace with an action key
    await stores.auth.create_subject("guest", uuid=UUID, key=KEY)
    await stores.auth.add_action_key("guest", ACTION_UUID, ACTION_KEY)
    # When the subject's key is rotated / Then the action key still works
    await stores.auth.create_subject("guest", rotate=True)
    assert await stores.auth.authenticate(ACTION_UUID, ACTION_KEY) == Subject("guest", ACTION_UUID)
    # When the subject is deleted / Then the action key goes with it
    await stores.auth.delete_subject("guest")
    assert await stores.auth.authenticate(ACTION_UUID, ACTION_KEY) is None
    assert await stores.auth.get_action_key("guest") is None
    # And a namespace created again under the name has none
    await stores.auth.create_subject("guest")
    assert await stores.auth.get_action_key("guest") is None
