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


def test_derived_key_is_deterministic_alphanumeric_and_secret_bound() -> None:
    # Given a secret and two uuids
    secret = b"s" * 32
    first, second = keys.new_uuid(), keys.new_uuid()
    # When keys are derived
    key = keys.derive_key(secret, first)
    # Then the key has the shape of a drawn key and is the same every time
    assert len(key) == keys.KEY_LENGTH
    assert set(key) <= set(string.ascii_letters + string.digits)
    assert keys.derive_key(secret, first) == key
    # And another uuid or another secret gives another key
    assert keys.derive_key(secret, second) != key
    assert keys.derive_key(b"t" * 32, first) != key
    # And it verifies against its stored hash like any key
    assert keys.verify_key(key, keys.hash_key(key))


def test_derived_key_is_pinned() -> None:
    # Given a fixed secret and uuid / Then the derivation gives the recorded key: it must
    # never change between versions (invokers sharing a secret must agree on every key,
    # and a stored action key must keep verifying after an upgrade)
    secret, uuid_ = b"0123456789abcdef0123456789abcdef", "23bc46b1-71f6-4ed5-8c54-816aa4f8c502"
    expected = "MeKy76pfURl9gqJ5boTD2JSyfzDfZIH49Uy7EoKlGTxNukKc2a0X4BDwVbj3xTR4"
    assert keys.derive_key(secret, uuid_) == expected
