"""Key generation and hashing (squall.store.keys)."""

from __future__ import annotations

import string
import uuid

from squall.store import keys


def test_new_uuid_is_a_random_uuid4() -> None:
    # When two uuids are made / Then both are canonical version-4 uuids, and differ
    a, b = keys.new_uuid(), keys.new_uuid()
    assert str(uuid.UUID(a)) == a
    assert uuid.UUID(a).version == 4
    assert a != b


def test_new_key_is_64_alphanumeric_characters() -> None:
    # When keys are made / Then 64 chars of [A-Za-z0-9], different each time
    made = {keys.new_key() for _ in range(50)}
    assert len(made) == 50
    for key in made:
        assert len(key) == keys.KEY_LENGTH == 64
        assert set(key) <= set(string.ascii_letters + string.digits)


def test_hash_is_salted_and_verifies() -> None:
    # Given a key hashed twice
    key = keys.new_key()
    first, second = keys.hash_key(key), keys.hash_key(key)
    # Then the hashes differ (fresh salt), neither contains the key, both verify it
    assert first != second
    assert key not in first
    assert keys.verify_key(key, first)
    assert keys.verify_key(key, second)
    # And other keys do not verify
    assert not keys.verify_key(key[:-1], first)
    assert not keys.verify_key(keys.new_key(), first)


def test_malformed_stored_hash_never_verifies() -> None:
    # Given stored values that are not hash_key results / Then False, never an exception
    key = keys.new_key()
    _, salt, digest = keys.hash_key(key).split("$")
    for stored in ("", key, f"md5${salt}${digest}", f"sha256$zz${digest}", f"sha256${salt}$"):
        assert not keys.verify_key(key, stored)


def test_dummy_verification_always_fails() -> None:
    # Given any key / When checked against the dummy / Then False
    assert keys.verify_dummy(keys.new_key()) is False
    assert keys.verify_dummy("") is False
