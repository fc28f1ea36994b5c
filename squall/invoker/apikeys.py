"""The API key an invoker gives an action: the invoking namespace's *action key*.

OpenWhisk passes the invoking user's own ``uuid:key`` to an action (``api_key`` in the
/run body, ``__OW_API_KEY`` in its environment) so that it can call the platform. Squall
stores keys hashed and cannot hand out a user's key, so each namespace has a second
credential for its actions (``docs/security.md``):

- its uuid is random, minted here on first need (``AuthStore.add_action_key``);
- its key is not stored anywhere: it is ``keys.derive_key(secret, uuid)``, recomputed
  from the platform's action-key secret; the store keeps only the key's hash, so a copy
  of the store yields no usable key, and ``authenticate`` accepts it as the namespace.

Guarantees of :class:`ActionKeys`:

- ``api_key(namespace)`` answers ``"uuid:key"`` or ``None`` (no secret, no subject, or a
  key minted under another secret); it never raises for those, and never logs a key.
- A key read from the store is checked against its stored hash before it is handed out
  (another secret minted it: an error is logged once per namespace, and ``None``).
- Answers are cached per namespace for ``ttl_s`` (10 s), so a warm run costs one dict
  look-up (the key is kept with the uuid); a rotated key (``squall admin user
  rotate-action-key``) reaches new runs within ``ttl_s``. Concurrent misses of one
  namespace wait for one look-up.
- When the store fails while a stale answer is cached, the stale answer is used (the
  action keeps working through a short outage); without one, ``ProviderError`` propagates
  and the activation ends as a whisk internal error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from squall.config import Settings
from squall.errors import ConfigError, Conflict, ProviderError
from squall.store import keys
from squall.store.contracts import AuthStore

log = logging.getLogger("squall.invoker")

SECRET_FILE = "action-key.secret"
# Shortest secret accepted from the operator: 32 characters (a random one here is 64 hex
# characters, 256 bits).
MIN_SECRET_LENGTH = 32
CACHE_TTL_S = 10.0


def load_secret(settings: Settings, *, cluster: bool) -> bytes | None:
    """The action-key secret: ``settings.action_key_secret``; else, in standalone, the
    owner-only file ``$SQUALL_HOME/action-key.secret`` (created with a random secret on
    first start); else (a cluster invoker without one) ``None``, with a warning: the
    invokers of a cluster must share the secret, so one must not invent its own.

    A given secret shorter than :data:`MIN_SECRET_LENGTH` raises ``ConfigError``.
    """
    given = settings.action_key_secret
    if given:
        if len(given) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"the action key secret (SQUALL_ACTION_KEY_SECRET) must be at least "
                f"{MIN_SECRET_LENGTH} characters long"
            )
        return given.encode("utf-8")
    if cluster:
        log.warning(
            "no action key secret (SQUALL_ACTION_KEY_SECRET): actions get no API key "
            "(__OW_API_KEY); give every invoker of the cluster the same secret"
        )
        return None
    return secret_file(settings.home / SECRET_FILE)


def secret_file(path: Path) -> bytes:
    """Read the secret at ``path``, or create it (mode 0600, written then hard-linked into
    place, so a concurrent starter never reads half a secret and the first one wins).
    A file too short to be a secret raises ``ConfigError``."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    if len(text) >= MIN_SECRET_LENGTH:
        return text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    try:
        os.link(tmp, path)  # fails if the file exists: made meanwhile, or too short
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    text = path.read_text().strip()
    if len(text) < MIN_SECRET_LENGTH:
        # Never replace it silently: keys minted under it would all stop verifying.
        raise ConfigError(
            f"{path} holds no usable action key secret (at least {MIN_SECRET_LENGTH} "
            "characters); remove it to have a new one made"
        )
    return text.encode("utf-8")


class ActionKeys:
    """Mints, checks and caches the action keys of namespaces; see the module docstring."""

    def __init__(
        self,
        auth: AuthStore,
        secret: bytes | None,
        *,
        ttl_s: float = CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._auth = auth
        self._secret = secret
        self._ttl_s = ttl_s
        self._clock = clock
        # namespace → (expiry, "uuid:key" or None)
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._mismatch_logged: set[str] = set()

    async def api_key(self, namespace: str) -> str | None:
        """The ``uuid:key`` actions invoked by ``namespace`` get, or ``None``."""
        if self._secret is None:
            return None
        answer = self._fresh(namespace)
        if answer is not None:
            return answer[0]
        # One look-up per namespace at a time: the others wait, then find it cached. A
        # lock (not a shared future) so that a look-up that fails or is cancelled simply
        # lets the next waiter try.
        lock = self._locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            answer = self._fresh(namespace)
            if answer is not None:
                return answer[0]
            stale = self._cache.get(namespace)
            try:
                key = await self._look_up(namespace, self._secret)
            except ProviderError:
                if stale is None:
                    raise
                log.warning("store unavailable; using the cached action key of %s", namespace)
                key = stale[1]
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[namespace] = (self._clock() + self._ttl_s, key)
        if not lock.locked() and len(self._locks) > 10_000:
            self._locks.clear()
        return key

    def _fresh(self, namespace: str) -> tuple[str | None] | None:
        """The cached answer of ``namespace`` (in a 1-tuple: it may be None) if still fresh."""
        cached = self._cache.get(namespace)
        if cached is not None and cached[0] > self._clock():
            return (cached[1],)
        return None

    async def _look_up(self, namespace: str, secret: bytes) -> str | None:
        uuid = await self._auth.get_action_key(namespace)
        if uuid is None:
            minted = keys.new_uuid()
            try:
                uuid = await self._auth.add_action_key(
                    namespace, minted, keys.derive_key(secret, minted)
                )
            except Conflict:  # a uuid4 collision: never in practice; next look-up retries
                return None
            if uuid is None:
                return None  # no such subject
            if uuid == minted:
                return f"{uuid}:{keys.derive_key(secret, uuid)}"
        # Made by someone else (another invoker, or before a restart): it is ours only if
        # it verifies against its stored hash, i.e. it was derived from the same secret.
        key = keys.derive_key(secret, uuid)
        subject = await self._auth.authenticate(uuid, key)
        if subject is None or subject.namespace != namespace:
            if namespace not in self._mismatch_logged:
                self._mismatch_logged.add(namespace)
                log.error(
                    "the action key of namespace %s was made with another action key "
                    "secret; its actions get no API key until the invokers share the "
                    "secret or 'squall admin user rotate-action-key %s' replaces the key",
                    namespace,
                    namespace,
                )
            return None
        return f"{uuid}:{key}"
