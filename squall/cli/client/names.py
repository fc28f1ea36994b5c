"""Qualified entity names, as ``wsk`` reads them.

``hello`` and ``pkg/hello`` are in the default namespace (``_``: the caller's own, or
the ``NAMESPACE`` property); ``/ns/hello`` and ``/ns/pkg/hello`` name the namespace.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from squall.cli.client.errors import ClientError

DEFAULT_NAMESPACE = "_"


@dataclass(frozen=True, slots=True)
class QualifiedName:
    namespace: str
    #: ``name`` or ``package/name``.
    name: str

    def __str__(self) -> str:
        return f"/{self.namespace}/{self.name}"

    @property
    def url_path(self) -> str:
        """``name`` (or ``package/name``) for a URL: each segment encoded, the ``/`` kept."""
        return "/".join(quote(part, safe="") for part in self.name.split("/"))


def parse(text: str, namespace: str = DEFAULT_NAMESPACE) -> QualifiedName:
    """``text`` as a qualified name; ``namespace`` when it names none."""
    if text.startswith("/"):
        ns, _, rest = text[1:].partition("/")
        if not ns or not rest or rest.endswith("/"):
            raise ClientError(f"'{text}' is not a valid qualified name")
        return QualifiedName(ns, rest)
    if not text or text.endswith("/") or text.count("/") > 1:
        raise ClientError(f"'{text}' is not a valid qualified name")
    return QualifiedName(namespace, text)
