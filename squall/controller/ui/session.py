"""Dashboard sessions: a signed, expiring cookie that names a namespace, never its key.

Signing in checks the namespace's ``uuid:key`` once (as the REST API would), then the
browser holds only ``namespace``, ``uuid`` and an expiry time, signed with HMAC-SHA256.
Guarantees:

- The key is never stored: not in the cookie, not in the page, not on the server.
- The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site
  makes the browser send it), ``Path=/dashboard``, ``Secure`` when the request came over
  HTTPS, and it expires after :data:`SESSION_S`; the signature covers the expiry.
- A session ends at its expiry, on sign-out (the cookie is cleared), when the namespace
  is deleted, or when its uuid changes (each request checks the subject in the store).
- The signing secret is derived from ``SQUALL_ACTION_KEY_SECRET`` when set, so every
  controller of a cluster accepts the others' sessions; without it each process draws a
  random one (a standalone server's sessions end when it restarts).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson

from squall.config import Settings
from squall.errors import NotFound
from squall.store.contracts import AuthStore

COOKIE = "squall_session"
SESSION_S = 8 * 3600
_DOMAIN = b"squall dashboard session v1\x00"


@dataclass(frozen=True, slots=True)
class Session:
    namespace: str
    uuid: str
    expires: int  # epoch seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Issues and checks session cookies; safe to share between tasks (no mutable state)."""

    def __init__(self, secret: bytes) -> None:
        # Domain separation: the same operator secret also derives action keys.
        self._key = hmac.new(secret, _DOMAIN, hashlib.sha256).digest()

    @classmethod
    def for_settings(cls, settings: Settings) -> Sessions:
        given = settings.action_key_secret
        return cls(given.encode() if given else secrets.token_bytes(32))

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, namespace: str, uuid: str, now: float | None = None) -> tuple[str, Session]:
        """A cookie value for ``namespace`` signed in with ``uuid``, and its session."""
        expires = int(now if now is not None else time.time()) + SESSION_S
        payload = _b64(orjson.dumps({"ns": namespace, "uuid": uuid, "exp": expires}))
        return f"{payload}.{self._sign(payload)}", Session(namespace, uuid, expires)

    def verify(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie value: None when absent, forged, altered or expired."""
        if not cookie:
            return None
        payload, _, signature = cookie.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            data = orjson.loads(_unb64(payload))
            session = Session(str(data["ns"]), str(data["uuid"]), int(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires <= (now if now is not None else time.time()):
            return None
        return session

    async def current(self, auth: AuthStore, cookie: str | None) -> Session | None:
        """:meth:`verify`, and the namespace still exists with the same uuid."""
        session = self.verify(cookie)
        if session is None:
            return None
        try:
            subject = await auth.get_subject(session.namespace)
        except NotFound:
            return None
        return session if hmac.compare_digest(subject.uuid, session.uuid) else None
