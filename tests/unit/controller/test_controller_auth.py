"""Basic ``uuid:key`` header parsing, namespace entitlement, and the identity cache."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator

import pytest
from starlette.requests import Request

from squall.controller.auth import (
    INVALID,
    NOT_SUPPLIED,
    Authenticator,
    Identity,
    parse_basic,
)
from squall.errors import Forbidden, Unauthorized
from squall.store.contracts import Subject
from squall.store.records import wall_clock_ms
from squall.store.sqlite_auth import SqliteAuthStore
from squall.store.sqlite_schema import Database, connect

UUID = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502"
KEY = "k" * 64


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic(f"{UUID}:{KEY}"), (UUID, KEY)),
        ("basic " + basic(f"{UUID}:{KEY}")[6:], (UUID, KEY)),  # the scheme is case-insensitive
        (basic("u:k:with:colons"), ("u", "k:with:colons")),  # the key may hold colons
    ],
)
def test_parse_basic(header: str, expected: tuple[str, str]) -> None:
    assert parse_basic(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic",
        "Basic ",
        "Bearer " + base64.b64encode(b"u:k").decode(),
        "Basic !!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        basic(":key-without-uuid"),
        basic("uuid-without-key:"),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
    ],
)
def test_parse_basic_rejects(header: str | None) -> None:
    assert parse_basic(header) is None


@pytest.mark.parametrize(
    "token",
    [
        "dTpr",  # u:k
        " dTpr\t",  # surrounding whitespace
        "dTprMQ==",  # padded
        "dTprMQ=",  # padding short
        "dTprMQ",  # padding missing
        "dTpr MQ==",  # inner whitespace
        "dTpr\nMQ==",
        "dTprMQ==x",  # data after the padding
        "=dTpr",
        "dTpr-_",  # the URL-safe alphabet
        "",
        "\u00e9",  # not ASCII
    ],
)
def test_parse_basic_decodes_as_strict_b64decode(token: str) -> None:
    # The token is decoded as base64.b64decode(token.strip(), validate=True) did: the
    # same answers, the same refusals, the same error for a token that is not ASCII.
    def by_b64decode() -> tuple[str, str] | None:
        uuid, sep, key = base64.b64decode(token.strip(), validate=True).decode().partition(":")
        return (uuid, key) if sep and uuid and key else None

    try:
        expected: object = by_b64decode()
    except binascii.Error:
        expected = None
    except ValueError as e:
        expected = (ValueError, str(e))
    try:
        got: object = parse_basic("Basic " + token)
    except ValueError as e:
        got = (type(e), str(e))
    assert got == expected


def test_identity_resolves_own_and_default_namespace() -> None:
    identity = Identity("guest", UUID)
    assert identity.subject == "guest"
    assert identity.resolve("_") == "guest"
    assert identity.resolve("guest") == "guest"
    with pytest.raises(Forbidden) as e:
        identity.resolve("other")
    assert e.value.status == 403
    assert (
        e.value.message == "The supplied authentication is not authorized to access this resource."
    )


class CountingAuthStore(SqliteAuthStore):
    """The SQLite auth store, counting look-ups."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, wall_clock_ms)
        self.calls = 0

    async def authenticate(self, uuid: str, key: str) -> Subject | None:
        self.calls += 1
        return await super().authenticate(uuid, key)


@pytest.fixture
async def store(anyio_backend: str) -> AsyncIterator[CountingAuthStore]:
    """One subject, guest, with UUID:KEY, in an in-memory database."""
    db = connect(":memory:")
    counting = CountingAuthStore(db)
    await counting.create_subject("guest", uuid=UUID, key=KEY)
    yield counting
    db.close()


def request_with(authorization: str | None) -> Request:
    """A Starlette request carrying only an ``Authorization`` header (or none)."""
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request({"type": "http", "headers": headers})


@pytest.mark.anyio
async def test_authenticate_messages(store: CountingAuthStore) -> None:
    auth = Authenticator(store)
    # No header → 401 "not supplied"
    with pytest.raises(Unauthorized) as e:
        await auth.authenticate(request_with(None))
    assert e.value.message == NOT_SUPPLIED
    assert e.value.status == 401
    # A wrong key or garbage → 401 "invalid"
    for header in (basic(f"{UUID}:{'x' * 64}"), "Basic !!!", "Token abc"):
        with pytest.raises(Unauthorized) as e:
            await auth.authenticate(request_with(header))
        assert e.value.message == INVALID
    # The right key → the identity
    identity = await auth.authenticate(request_with(basic(f"{UUID}:{KEY}")))
    assert identity == Identity("guest", UUID)


@pytest.mark.anyio
async def test_successes_are_cached_failures_are_not(store: CountingAuthStore) -> None:
    auth = Authenticator(store)
    good, bad = basic(f"{UUID}:{KEY}"), basic(f"{UUID}:wrong")
    # When the same good header comes twice / Then the store is asked once
    assert await auth.identify(good) == Identity("guest", UUID)
    assert await auth.identify(good) == Identity("guest", UUID)
    assert store.calls == 1
    # When a bad header comes twice / Then the store is asked both times
    assert await auth.identify(bad) is None
    assert await auth.identify(bad) is None
    assert store.calls == 3
    # When the cache is dropped / Then the store is asked again
    auth.forget_all()
    await auth.identify(good)
    assert store.calls == 4


@pytest.mark.anyio
async def test_cache_entries_expire(store: CountingAuthStore) -> None:
    auth = Authenticator(store, ttl=0.0)
    good = basic(f"{UUID}:{KEY}")
    await auth.identify(good)
    await auth.identify(good)
    assert store.calls == 2
