"""Entity names, namespaces and fully qualified paths, with OpenWhisk's validation.

A fully qualified name is ``/namespace[/package]/name``. Inside a namespace the store keys
an entity by its *path*: ``name`` or ``package/name``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from squall.errors import BadRequest

# OpenWhisk: \A([\w]|[\w][\w@ .&-]{0,254}[\w@.&-])\z with Java's ASCII \w.
_NAME_RE = re.compile(r"\A(\w|\w[\w@ .&-]{0,254}[\w@.&-])\Z", re.ASCII)
MAX_NAME_LENGTH = 256
DEFAULT_NAMESPACE = "_"

ENTITY_NAME_ILLEGAL = "The name of the entity contains illegal characters."
NAMESPACE_ILLEGAL = "The namespace contains illegal characters."
MALFORMED_FQN = (
    "The fully qualified name of the entity must contain at least the namespace and the name "
    "of the entity."
)


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and _NAME_RE.match(name) is not None


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid entity name, else raise 400 with OpenWhisk's text."""
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequest(f"Entity name longer than allowed: {len(name)} > {MAX_NAME_LENGTH}.")
    if not _NAME_RE.match(name):
        raise BadRequest(ENTITY_NAME_ILLEGAL)
    return name


def check_namespace(namespace: str) -> str:
    if namespace == DEFAULT_NAMESPACE or is_valid_name(namespace):
        return namespace
    raise BadRequest(NAMESPACE_ILLEGAL)


@dataclass(frozen=True, slots=True)
class EntityPath:
    """An entity inside a namespace: ``package`` is ``""`` for top-level entities."""

    namespace: str
    package: str
    name: str

    @property
    def path(self) -> str:
        """The key inside the namespace: ``name`` or ``package/name``."""
        return f"{self.package}/{self.name}" if self.package else self.name

    @property
    def entity_namespace(self) -> str:
        """OpenWhisk's ``namespace`` field: ``ns`` or ``ns/package``."""
        return f"{self.namespace}/{self.package}" if self.package else self.namespace

    @property
    def fqn(self) -> str:
        # Spelled out, not through ``entity_namespace``: read several times per invoke.
        if self.package:
            return f"/{self.namespace}/{self.package}/{self.name}"
        return f"/{self.namespace}/{self.name}"

    def __str__(self) -> str:
        return self.fqn


def parse_fqn(value: str, default_namespace: str) -> EntityPath:
    """Parse a reference such as ``/ns/pkg/a``, ``/ns/a``, ``pkg/a`` or ``a``.

    A leading ``/`` means the first segment is a namespace; ``_`` resolves to
    ``default_namespace``. Raises 400 for malformed names.
    """
    text = value.strip()
    if text.startswith("/"):
        parts = text[1:].split("/")
        if len(parts) < 2 or len(parts) > 3 or any(not p for p in parts):
            raise BadRequest(MALFORMED_FQN)
        namespace = parts[0]
        rest = parts[1:]
    else:
        parts = text.split("/")
        if len(parts) > 2 or any(not p for p in parts):
            raise BadRequest(MALFORMED_FQN)
        namespace = default_namespace
        rest = parts
    if namespace == DEFAULT_NAMESPACE:
        namespace = default_namespace
    check_namespace(namespace)
    for part in rest:
        check_name(part)
    if len(rest) == 2:
        return EntityPath(namespace, rest[0], rest[1])
    return EntityPath(namespace, "", rest[0])
