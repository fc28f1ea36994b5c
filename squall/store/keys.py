"""Credentials: generating subject uuids and keys, hashing keys, verifying them.

A key is 64 characters drawn from ``[A-Za-z0-9]`` with :mod:`secrets`, about 381 bits of
entropy. Brute-forcing such a key is hopeless whatever the hash costs, so a slow password
hash (bcrypt, scrypt, argon2) would buy nothing but latency on every uncached request. A
salted SHA-256 is enough: the per-subject salt makes equal keys hash differently and keeps
precomputed tables useless, and the hash keeps a leaked database from handing out keys.

Guarantees:

- :func:`hash_key` never returns the key itself, and the same key hashes differently each
  time (fresh salt); the salt is stored beside the digest in the returned string.
- :func:`verify_key` compares in constant time (:func:`hmac.compare_digest`) and returns
  ``False`` (never raises) for a malformed stored hash.
- :func:`verify_dummy` costs what a real verification costs, so callers can make an
  unknown uuid take as long as a wrong key.
- :func:`derive_key` is deterministic: the same secret and uuid always give the same
  64-character key, in the alphabet of :func:`new_key`; without the secret it cannot be
  computed from the uuid (HMAC-SHA256, a pseudo-random function keyed by the secret).

Action keys (see ``docs/security.md``) are the one kind of key that is derived, not drawn:
``derive_key(secret, uuid)``. The store still keeps only its :func:`hash_key` hash, so a
copy of the store yields no usable key, while an invoker that holds the secret recomputes
the key from the uuid whenever it needs it, without the key being stored anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import uuid

KEY_LENGTH = 64
_KEY_ALPHABET = string.ascii_letters + string.digits
_SALT_BYTES = 16
# Stored form: "<scheme>$<salt hex>$<digest hex>". The scheme prefix lets a later
# migration recognise (and upgrade) hashes made by an older scheme.
_SCHEME = "sha256"


def new_uuid() -> str:
    """A random (version 4) uuid in its canonical 36-character form."""
    return str(uuid.uuid4())


def new_key() -> str:
    """A fresh 64-character key from ``[A-Za-z0-9]``, drawn with :mod:`secrets`."""
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(KEY_LENGTH))


def derive_key(secret: bytes, uuid: str) -> str:
    """The action key of ``uuid`` under ``secret``: 64 characters of ``[A-Za-z0-9]``.

    HMAC-SHA256 gives 256 bits, which is only 43 base-62 digits; two HMAC blocks are
    chained as in HKDF-Expand (RFC 5869, the secret as the pseudo-random key, the uuid
    as the info) to get 512 bits, and 64 base-62 digits are taken from them (about 381
    bits, the strength of a drawn key; 2^512 is so much larger than 62^64 that the digits
    are uniform for all practical purposes).
    """
    info = b"squall action key\x00" + uuid.encode("utf-8")
    first = hmac.new(secret, info + b"\x01", hashlib.sha256).digest()
    second = hmac.new(secret, first + info + b"\x02", hashlib.sha256).digest()
    number = int.from_bytes(first + second, "big")
    digits = []
    for _ in range(KEY_LENGTH):
        number, digit = divmod(number, len(_KEY_ALPHABET))
        digits.append(_KEY_ALPHABET[digit])
    return "".join(digits)


def _digest(key: str, salt: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + key.encode("utf-8")).hexdigest()


def hash_key(key: str) -> str:
    """Hash ``key`` with a fresh random salt; returns ``"sha256$<salt>$<digest>"``."""
    salt = secrets.token_hex(_SALT_BYTES)
    return f"{_SCHEME}${salt}${_digest(key, salt)}"


def verify_key(key: str, stored: str) -> bool:
    """True when ``key`` hashes to ``stored`` (a :func:`hash_key` result), in constant time."""
    scheme, _, rest = stored.partition("$")
    salt, _, expected = rest.partition("$")
    if scheme != _SCHEME or not expected:
        return False
    try:
        actual = _digest(key, salt)
    except ValueError:  # salt is not hex: a corrupt row never matches
        return False
    return hmac.compare_digest(actual, expected)


# Compared against when the uuid is unknown. It is the hash of a random key nobody
# knows, so the comparison always fails, after doing the same work as a real one.
_DUMMY_HASH = hash_key(new_key())


def verify_dummy(key: str) -> bool:
    """Do the work of :func:`verify_key` against a hash no key matches; always ``False``."""
    verify_key(key, _DUMMY_HASH)
    return False
