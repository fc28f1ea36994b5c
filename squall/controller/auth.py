"""HTTP Basic ``uuid:key`` authentication and namespace entitlement.

Successful look-ups are cached for ``ttl`` seconds keyed by a digest of the header (the
key itself is never kept in memory beyond the request), so the hot path costs a dict hit.
A rotated or deleted key therefore stops working on this controller within ``ttl``.
Failures are not cached: a typo fixed by the user works at once. The owner of a
namespace (whom a web action runs as, :meth:`Authenticator.owner`) is cached by the same
rule: a deleted subject stops owning its namespace on this controller within ``ttl``.
"""

from __future__ import annotations

import binascii
import hashlib
import time
from dataclasses import dataclass

from squall.controller.http import HttpRequest
from squall.entities.names import DEFAULT_NAMESPACE
from squall.errors import Forbidden, Unauthorized
from squall.store.contracts import AuthStore

NOT_SUPPLIED = "The resource requires authentication, which was not supplied with the request."
INVALID = "The supplied authentication is invalid."


@dataclass(frozen=True, slots=True)
class Identity:
    """The authenticated caller: a namespace (OpenWhisk's subject and namespace are one)."""

    namespace: str
    uuid: str

    @property
    def subject(self) -> str:
        return self.namespace

    def resolve(self, namespace: str) -> str:
        """Map a path's namespace to the caller's; another namespace → 403 (no leak)."""
        if namespace in (DEFAULT_NAMESPACE, self.namespace):
            return self.namespace
        raise Forbidden()


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """``Basic base64(uuid:key)`` → ``(uuid, key)``; anything else → None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    # ``base64.b64decode(token.strip(), validate=True)`` spelled out: its two Python
    # frames are on every request's path. A token that is not ASCII fails as there.
    try:
        data = token.strip().encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("string argument should contain only ASCII characters") from None
    try:
        decoded = binascii.a2b_base64(data, strict_mode=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    uuid, sep, key = decoded.partition(":")
    if not sep or not uuid or not key:
        return None
    return uuid, key


class Authenticator:
    def __init__(self, store: AuthStore, ttl: float = 10.0, max_entries: int = 10_000) -> None:
        self._store = store
        self._ttl = ttl
        self._max = max_entries
        self._cache: dict[bytes, tuple[Identity, float]] = {}
        self._owners: dict[str, tuple[Identity, float]] = {}

    def forget_all(self) -> None:
        self._cache.clear()
        self._owners.clear()

    async def owner(self, namespace: str) -> Identity:
        """The identity of the subject owning ``namespace`` (NotFound if there is none),
        cached for ``ttl`` as :meth:`identify` caches: every web action request needs it,
        and without the cache it is a store read per request."""
        now = time.monotonic()
        hit = self._owners.get(namespace)
        if hit is not None and hit[1] > now:
            return hit[0]
        subject = await self._store.get_subject(namespace)
        identity = Identity(subject.namespace, subject.uuid)
        if len(self._owners) >= self._max:
            self._owners.clear()
        self._owners[namespace] = (identity, now + self._ttl)
        return identity

    async def identify(self, header: str | None) -> Identity | None:
        """The identity for an ``Authorization`` header, or None if absent/invalid."""
        creds = parse_basic(header)
        if creds is None:
            return None
        digest = hashlib.sha256(header.encode() if header else b"").digest()
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        subject = await self._store.authenticate(*creds)
        if subject is None:
            self._cache.pop(digest, None)
            return None
        identity = Identity(subject.namespace, subject.uuid)
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[digest] = (identity, now + self._ttl)
        return identity

    async def authenticate(self, request: HttpRequest) -> Identity:
        """The caller of ``request``, or 401 with OpenWhisk's message."""
        header = request.headers.get("authorization")
        if not header:
            raise Unauthorized(NOT_SUPPLIED)
        identity = await self.identify(header)
        if identity is None:
            raise Unauthorized(INVALID)
        return identity
