"""Parameters encrypted at rest: AES-256-GCM under the platform's parameter key.

OpenWhisk's ``ParameterEncryption`` encrypts each default parameter of an entity as it is
written and marks it with ``"encryption": "aes-256"``; its value becomes the base64 of a
4-byte big-endian IV length, the IV, and the GCM ciphertext with its 16-byte tag. Squall
writes the same shape, with these differences (docs/security.md):

- the IV is 12 bytes (GCM's native size; OpenWhisk uses 128), and any IV length is read,
  so values OpenWhisk encrypted with the same key open too (the plaintext is the value's
  compact JSON in both);
- a :class:`KeyRing` holds the current key and any previous ones: values are always
  written under the current key and read under whichever key opens them (GCM's tag tells
  a wrong key from the right one), so a key can be rotated while servers run;
- a parameter without a marker (written before encryption was on) is read as it is.

Keys are 32 random bytes, written in base64 (``SQUALL_PARAMETER_KEY``, and
``SQUALL_PARAMETER_KEY_PREVIOUS``, comma-separated, during a rotation). A standalone
server keeps them in ``$SQUALL_HOME/parameter.key`` (mode 0600, current key on the first
line, previous ones after), created on first start; a file-backed ring re-reads the file
when it changes, so ``squall admin parameter-key rotate`` reaches a running server.

Guarantees of :class:`KeyRing`:

- ``lock`` never returns a plaintext of a value it was given, unless the ring has no key
  at all (a cluster started without one: parameters are stored as given, as OpenWhisk
  does with no key, and a warning is logged once).
- ``unlock`` returns plain values, or raises ``ProviderError`` when a value is marked but
  no key of the ring opens it: a ciphertext is never handed out as if it were the value.
- Thread- and task-safe: keys are replaced as a whole tuple, never mutated; the ciphers
  are built from them on first use and rebuilt when they change (paired with the keys
  they came from, so a reader never mixes two rings).

``cryptography`` is imported when a first value or message is encrypted or opened, not
at start: its Rust extension and OpenSSL's ``libcrypto`` are ~10 MiB of a server's
resident pages (and 0.9 MiB of its heap) that a server which never seals anything (only
blocking invokes of actions without parameters) does not need (bench/README.md,
"memory_at_concurrency.py", the server's memory).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from squall.config import Settings
from squall.errors import ConfigError, ProviderError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger("squall.store")

#: The ``encryption`` marker of a parameter encrypted here (OpenWhisk's name for it).
AES256 = "aes-256"
KEY_BYTES = 32
IV_BYTES = 12
KEY_FILE = "parameter.key"
#: How often a file-backed ring looks at its file for a rotated key, at most.
RELOAD_INTERVAL_S = 1.0
#: Prefix of sealed opaque bytes (a pending activation's message): never valid JSON.
SEALED_BYTES = b"\x00aes-256\x00"

NOT_OPENED = (
    "a stored parameter is encrypted with a key this server does not have: give it the "
    "current key in SQUALL_PARAMETER_KEY and the key before it in SQUALL_PARAMETER_KEY_PREVIOUS"
)


def new_key() -> str:
    """A fresh random key, base64 (what ``SQUALL_PARAMETER_KEY`` holds)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def encode_key(key: bytes | None) -> str:
    """``key`` in base64, as settings and key files hold it ("" for None)."""
    return "" if key is None else base64.b64encode(key).decode("ascii")


def parse_key(text: str, where: str) -> bytes:
    """The 32 bytes of a base64 key; ``ConfigError`` naming ``where`` otherwise (never
    quoting the key)."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where} is not a base64 key (squall admin parameter-key new)") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{where} must be {KEY_BYTES} bytes in base64, not {len(key)} bytes")
    return key


@dataclass(frozen=True, slots=True)
class Keys:
    """The current key (None: encryption off) and the previous ones, newest first."""

    current: bytes | None
    previous: tuple[bytes, ...] = ()

    @property
    def all(self) -> tuple[bytes, ...]:
        return ((self.current,) if self.current else ()) + self.previous


class KeyRing:
    """Encrypts and decrypts parameter values; see the module docstring.

    ``path``: the key file the keys came from, re-read (at most every
    :data:`RELOAD_INTERVAL_S`, and whenever a value opens under no key) when it changed.
    """

    def __init__(self, keys: Keys, *, path: Path | None = None) -> None:
        self._keys = keys
        self._built: tuple[Keys, tuple[AESGCM, ...]] | None = None
        self._path = path
        self._stamp = _stamp(path) if path is not None else None
        self._checked = time.monotonic()
        self._warned = False

    @property
    def _ciphers(self) -> tuple[AESGCM, ...]:
        """One cipher per key of the ring, current first, built for the keys in place."""
        keys, built = self._keys, self._built
        if built is None or built[0] is not keys:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            built = self._built = (keys, tuple(AESGCM(k) for k in keys.all))
        return built[1]

    @property
    def enabled(self) -> bool:
        return self._keys.current is not None

    @property
    def keys(self) -> Keys:
        return self._keys

    # -- values --------------------------------------------------------------------------

    def encrypt_value(self, value: Any) -> str | None:
        """``value`` encrypted under the current key, or None without a key."""
        self._maybe_reload()
        if self._keys.current is None or not self._ciphers:
            self._warn_plain()
            return None
        iv = os.urandom(IV_BYTES)
        sealed = self._ciphers[0].encrypt(iv, orjson.dumps(value), None)
        return base64.b64encode(struct.pack(">i", IV_BYTES) + iv + sealed).decode("ascii")

    def decrypt_value(self, text: object) -> Any:
        """The value a :meth:`encrypt_value` text holds; ``ProviderError`` if no key opens it."""
        plain = self._open(_split(text))
        if plain is None:
            raise ProviderError(NOT_OPENED)
        return orjson.loads(plain)

    def is_current(self, text: object) -> bool:
        """Whether the current key opens ``text`` (a rotation leaves such values alone)."""
        self._maybe_reload()
        if self._keys.current is None or not self._ciphers:
            return False
        from cryptography.exceptions import InvalidTag

        iv, sealed = _split(text)
        try:
            self._ciphers[0].decrypt(iv, sealed, None)
        except InvalidTag:
            return False
        return True

    # -- parameter lists -----------------------------------------------------------------

    def lock(self, kvs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Each unmarked parameter of ``kvs`` encrypted and marked (a copy)."""
        out: list[dict[str, Any]] = []
        for kv in kvs:
            entry = dict(kv)
            if entry.get("encryption") is None:
                text = self.encrypt_value(entry.get("value"))
                if text is not None:
                    entry["value"] = text
                    entry["encryption"] = AES256
            out.append(entry)
        return out

    def unlock(self, kvs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Each marked parameter of ``kvs`` decrypted, its marker dropped (a copy);
        unmarked ones as they are."""
        out: list[dict[str, Any]] = []
        for kv in kvs:
            entry = dict(kv)
            if entry.get("encryption") is not None:
                _check_marker(entry["encryption"])
                entry["value"] = self.decrypt_value(entry.get("value"))
                del entry["encryption"]
            out.append(entry)
        return out

    def stale(self, kvs: Iterable[Mapping[str, Any]]) -> bool:
        """Whether some parameter of ``kvs`` is plain or under a previous key (what a
        rotation rewrites)."""
        return any(
            kv.get("encryption") is None or not self.is_current(kv.get("value")) for kv in kvs
        )

    # -- opaque bytes --------------------------------------------------------------------

    def seal(self, data: bytes) -> bytes:
        """``data`` encrypted under the current key (as it is without a key)."""
        self._maybe_reload()
        if self._keys.current is None:
            return data
        iv = os.urandom(IV_BYTES)
        return SEALED_BYTES + iv + self._ciphers[0].encrypt(iv, data, None)

    def unseal(self, data: bytes) -> bytes:
        """What :meth:`seal` sealed; bytes that were never sealed as they are."""
        if not data.startswith(SEALED_BYTES):
            return data
        body = data[len(SEALED_BYTES) :]
        plain = self._open((body[:IV_BYTES], body[IV_BYTES:]))
        if plain is None:
            raise ProviderError(NOT_OPENED)
        return plain

    # -- keys ----------------------------------------------------------------------------

    def _open(self, parts: tuple[bytes, bytes]) -> bytes | None:
        from cryptography.exceptions import InvalidTag

        iv, sealed = parts
        for attempt in range(2):
            for cipher in self._ciphers:
                try:
                    return cipher.decrypt(iv, sealed, None)
                except InvalidTag:
                    continue
            # No key opens it: a rotation may have just written a new key file.
            if attempt == 0 and not self._reload(force=True):
                break
        return None

    def _maybe_reload(self) -> None:
        if self._path is not None and time.monotonic() - self._checked >= RELOAD_INTERVAL_S:
            self._reload(force=False)

    def _reload(self, *, force: bool) -> bool:
        """Re-read the key file if it changed; whether the keys changed."""
        if self._path is None:
            return False
        self._checked = time.monotonic()
        stamp = _stamp(self._path)
        if stamp == self._stamp and not force:
            return False
        keys = read_key_file(self._path)
        self._stamp = stamp
        if keys == self._keys:
            return False
        # One assignment: a concurrent reader sees the old ring or the new one (its
        # ciphers are rebuilt on their next use, see ``_ciphers``).
        self._keys = keys
        log.info("parameter keys re-read from %s", self._path)
        return True

    def _warn_plain(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "no parameter key (SQUALL_PARAMETER_KEY): parameters and credentials are "
                "stored unencrypted; give every controller and invoker the same key"
            )


def _check_marker(marker: object) -> None:
    if marker != AES256:
        raise ProviderError(f"a stored parameter is encrypted with {marker!r}, which Squall lacks")


def _split(text: object) -> tuple[bytes, bytes]:
    """(IV, ciphertext with tag) of an encrypted value's text."""
    try:
        raw = base64.b64decode(str(text), validate=True)
        (iv_len,) = struct.unpack(">i", raw[:4])
    except (binascii.Error, ValueError, struct.error):
        raise ProviderError("a stored parameter marked encrypted is not a ciphertext") from None
    if not 0 < iv_len <= len(raw) - 4:
        raise ProviderError("a stored parameter marked encrypted is not a ciphertext")
    return raw[4 : 4 + iv_len], raw[4 + iv_len :]


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)


# -- where keys come from --------------------------------------------------------------


def read_key_file(path: Path) -> Keys:
    """The keys of a key file: one base64 key a line, the current one first."""
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise ConfigError(f"{path} holds no parameter key; remove it to have one made")
    parsed = [parse_key(line, f"line {n + 1} of {path}") for n, line in enumerate(lines)]
    return Keys(parsed[0], tuple(parsed[1:]))


def write_key_file(path: Path, keys: Iterable[str]) -> None:
    """Replace ``path`` atomically with ``keys`` (current first), owner-only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{k}\n" for k in keys))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def ensure_key_file(path: Path) -> None:
    """Create ``path`` with a new key unless it exists (the first start wins a race: the
    file is written aside, then hard-linked into place)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new_key() + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process made it meanwhile: its key it is
    finally:
        tmp.unlink()


def uses_key_file(settings: Settings) -> bool:
    """Whether the keys live in ``$SQUALL_HOME/parameter.key``: no key given and the store
    is the standalone SQLite file (a cluster's members must share one key: never invented)."""
    url = settings.store_url.strip()
    return not settings.parameter_key and (not url or url.startswith("sqlite:"))


def key_ring(settings: Settings) -> KeyRing:
    """The ring ``settings`` call for: the given keys, else the standalone key file
    (created on first start), else (a cluster without a key) a ring without keys."""
    if settings.parameter_key:
        previous = tuple(
            parse_key(item, "SQUALL_PARAMETER_KEY_PREVIOUS")
            for item in settings.parameter_key_previous.split(",")
            if item.strip()
        )
        return KeyRing(Keys(parse_key(settings.parameter_key, "SQUALL_PARAMETER_KEY"), previous))
    if settings.parameter_key_previous:
        raise ConfigError("SQUALL_PARAMETER_KEY_PREVIOUS is set without SQUALL_PARAMETER_KEY")
    if uses_key_file(settings):
        path = settings.home / KEY_FILE
        ensure_key_file(path)
        return KeyRing(read_key_file(path), path=path)
    return KeyRing(Keys(None))
