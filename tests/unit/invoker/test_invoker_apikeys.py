"""Action keys as the invoker hands them out (squall.invoker.apikeys), on a real store."""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from squall.config import Settings
from squall.errors import ConfigError, ProviderError
from squall.invoker.apikeys import SECRET_FILE, ActionKeys, load_secret
from squall.store import keys
from squall.store.contracts import Subject
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

SECRET = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
async def store() -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(":memory:")
    await opened.auth.create_subject("guest")
    try:
        yield opened
    finally:
        await opened.close()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_first_use_mints_a_key_that_authenticates_as_the_namespace(
    store: SqliteStore,
) -> None:
    # Given a namespace without an action key
    action_keys = ActionKeys(store.auth, SECRET)
    # When its key is asked for
    api_key = await action_keys.api_key("guest")
    # Then a uuid:key is minted, stored, derived from the secret, and accepted as guest
    assert api_key is not None
    uuid, _, key = api_key.partition(":")
    assert await store.auth.get_action_key("guest") == uuid
    assert key == keys.derive_key(SECRET, uuid)
    assert await store.auth.authenticate(uuid, key) == Subject("guest", uuid)
    # And another invoker with the same secret (no cache) hands out the same key
    assert await ActionKeys(store.auth, SECRET).api_key("guest") == api_key


async def test_concurrent_first_uses_mint_one_key(store: SqliteStore) -> None:
    # Given two invokers sharing a secret / When many runs ask at once
    a, b = ActionKeys(store.auth, SECRET), ActionKeys(store.auth, SECRET)
    answers = await asyncio.gather(*(k.api_key("guest") for k in [a, b] * 5))
    # Then they all got the one stored key
    assert len(set(answers)) == 1
    assert answers[0] is not None
    assert answers[0].partition(":")[0] == await store.auth.get_action_key("guest")


async def test_the_answer_is_cached_then_refreshed(store: SqliteStore) -> None:
    # Given a key handed out
    clock = Clock()
    action_keys = ActionKeys(store.auth, SECRET, ttl_s=10.0, clock=clock)
    first = await action_keys.api_key("guest")
    # When it is rotated in the store (its row deleted)
    assert await store.auth.delete_action_key("guest")
    # Then within the ttl the cached key is still handed out (no store read)...
    clock.now += 9.9
    assert await action_keys.api_key("guest") == first
    # ...and after it a new key is minted, and the old one no longer authenticates
    clock.now += 0.2
    second = await action_keys.api_key("guest")
    assert second is not None and second != first
    assert first is not None
    assert await store.auth.authenticate(*first.split(":")) is None
    assert await store.auth.authenticate(*second.split(":")) == Subject(
        "guest", second.split(":")[0]
    )


async def test_a_key_of_another_secret_is_not_handed_out(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a key minted by an invoker with another secret
    minted = await ActionKeys(store.auth, b"another secret, 32 characters.!!").api_key("guest")
    assert minted is not None
    # When an invoker with this secret asks twice
    action_keys = ActionKeys(store.auth, SECRET, ttl_s=0.0)
    with caplog.at_level(logging.ERROR, logger="squall.invoker"):
        assert await action_keys.api_key("guest") is None
        assert await action_keys.api_key("guest") is None
    # Then no key, one error naming the namespace, and neither key in the log
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "guest" in errors[0].getMessage()
    uuid = minted.partition(":")[0]
    assert minted.partition(":")[2] not in caplog.text
    assert keys.derive_key(SECRET, uuid) not in caplog.text


async def test_no_secret_or_no_subject_means_no_key(store: SqliteStore) -> None:
    # Given no secret / Then no key, nothing minted
    assert await ActionKeys(store.auth, None).api_key("guest") is None
    assert await store.auth.get_action_key("guest") is None
    # Given a namespace without a subject / Then no key
    assert await ActionKeys(store.auth, SECRET).api_key("ghost") is None


async def test_a_store_outage_uses_the_stale_key_or_fails(tmp_path: Path) -> None:
    # Given a key handed out and cached, then the store closed (every call fails)
    opened = await SqliteStore.open(tmp_path / "squall.db")
    await opened.auth.create_subject("guest")
    clock = Clock()
    action_keys = ActionKeys(opened.auth, SECRET, ttl_s=1.0, clock=clock)
    known = await action_keys.api_key("guest")
    await opened.close()
    clock.now += 5
    # When the cache is stale / Then the stale key is used rather than failing the run
    assert await action_keys.api_key("guest") == known
    # And a namespace never looked up fails with the store's error
    with pytest.raises(ProviderError):
        await action_keys.api_key("other")


def test_standalone_creates_a_private_secret_file_once(tmp_path: Path) -> None:
    # Given a standalone home without a secret
    settings = Settings(home=tmp_path)
    # When the secret is loaded twice
    first = load_secret(settings, cluster=False)
    second = load_secret(settings, cluster=False)
    # Then one random secret was written, readable by its owner only
    path = tmp_path / SECRET_FILE
    assert first is not None and first == second
    assert len(first) == 64
    assert path.read_text().strip().encode() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_given_secret_wins_and_a_cluster_never_invents_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a secret in the settings / Then it is used, and no file is made
    given = "s" * 40
    assert load_secret(Settings(home=tmp_path, action_key_secret=given), cluster=True) == (
        given.encode()
    )
    assert not (tmp_path / SECRET_FILE).exists()
    # And it is never shown in the settings' repr
    assert given not in repr(Settings(home=tmp_path, action_key_secret=given))
    # Given a cluster invoker without one / Then none, with a warning, and no file
    with caplog.at_level(logging.WARNING, logger="squall.invoker"):
        assert load_secret(Settings(home=tmp_path), cluster=True) is None
    assert "SQUALL_ACTION_KEY_SECRET" in caplog.text
    assert not (tmp_path / SECRET_FILE).exists()
    # Given a secret too short to be safe / Then a configuration error
    with pytest.raises(ConfigError):
        load_secret(Settings(home=tmp_path, action_key_secret="short"), cluster=False)


def test_a_damaged_secret_file_is_refused_not_replaced(tmp_path: Path) -> None:
    # Given a secret file that was truncated
    (tmp_path / SECRET_FILE).write_text("abc\n")
    # When standalone loads it / Then a configuration error, and the file is left alone
    with pytest.raises(ConfigError):
        load_secret(Settings(home=tmp_path), cluster=False)
    assert (tmp_path / SECRET_FILE).read_text() == "abc\n"
