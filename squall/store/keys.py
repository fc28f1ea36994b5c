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
