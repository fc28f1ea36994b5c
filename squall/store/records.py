"""What every store provider shares: revisions, write times, conflict and credential
messages, the indexed fields of an activation record, and the filters of a listing.

Keeping them in one place makes the providers agree exactly (the contract suite checks
behaviour, this keeps the formats identical, so data could move between providers).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson

from squall.entities import activation
from squall.entities.activation import Activation
from squall.errors import BadRequest, ProviderError
from squall.store import keys
from squall.store.contracts import ActivationQuery

Clock = Callable[[], int]
"""Returns the current time in epoch milliseconds."""

# OpenWhisk's wording for the two kinds of Conflict.
EXISTS = "resource already exists"
STALE = "Concurrent modification to resource detected."
NAMESPACE_EXISTS = "Namespace already exists"
UUID_TAKEN = "The uuid is already used by another namespace."


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def next_rev(rev: str | None) -> str:
    """``"<counter>-<16 hex>"``: the counter counts writes, the random part makes two
    writers that both saw revision n produce different revisions n+1."""
    counter = 0 if rev is None else int(rev.partition("-")[0])
    return f"{counter + 1}-{secrets.token_hex(8)}"


def activation_key(record: Activation) -> tuple[str, str, str, int]:
    """(activation id, namespace, entity path, start) of an activation record.

    The entity path is ``name``, prefixed with the package when the ``path`` annotation
    has three segments (``ns/pkg/name``), so the ``name`` filter can match
    ``pkg/action``.
    """
    name = record.name
    annotations = record.annotations
    first = annotations[0] if annotations else None
    if first is not None and "key" in first and first["key"] == "path":
        # Where every record Squall makes has it (the invoker's, the controller's): read
        # with ``in`` and subscripts, as ``annotation`` would find it (the first ``path``).
        path = first["value"] if "value" in first else None  # noqa: SIM401 (no call)
    else:
        path = record.annotation("path")
    if isinstance(path, str):
        # A sequence pattern, not ``len``: one call less on every write.
        match path.strip("/").split("/"):
            case [_, package, _]:  # "ns/pkg/name" (a leading "/" is tolerated)
                name = f"{package}/{name}"
    return record.activation_id, record.namespace, name, record.start


# The run state of a stored activation (its ``state`` column): NULL once the record is
# final; while it is pending, QUEUED until a run of it starts (``ActivationStore.start``),
# then STARTED. A pending record has a state, a final one none: the store keeps that
# true on every write, so the unfinished records are those with a state.
QUEUED = "queued"
STARTED = "started"


def run_state(record: Activation) -> str | None:
    """The state a record written as it is gets: QUEUED if pending, else None (final).
    (``record.pending`` read through: two property calls less per write.)"""
    return QUEUED if record.response.status == activation.PENDING else None


_encode = activation.encode_record


def dumps_record(record: Activation) -> str:
    """A record's stored JSON text (its OpenWhisk shape, see ``entities.activation``):
    the encoder itself, not ``activation.encode`` around it (every record written)."""
    return _encode(record).decode()


def loads_record(text: str | bytes) -> Activation:
    """A record from its stored JSON text; ``ProviderError`` if the row holds none."""
    try:
        return activation.decode(text)
    except ValueError as e:
        raise ProviderError(f"an unreadable activation record: {e}") from e


def dumps_body(body: dict[str, Any]) -> str:
    # Serialize before any transaction starts: a body that cannot be encoded then fails
    # without having touched the database.
    return orjson.dumps(body).decode()


def loads_body(text: str) -> dict[str, Any]:
    """A fresh dict of stored JSON text (never the caller's own object)."""
    body: dict[str, Any] = orjson.loads(text)
    return body


def new_credentials(uuid: str | None, key: str | None) -> str:
    """Check a subject's requested ``uuid`` and ``key`` (None: generate one); the key."""
    if uuid is not None and (not uuid or ":" in uuid):
        # Basic auth splits "uuid:key" at the first colon.
        raise BadRequest("A subject uuid must be non-empty and contain no ':'.")
    if key is not None and not key:
        raise BadRequest("A subject key must be non-empty.")
    return keys.new_key() if key is None else key


# The filters below are SQL text with ``mark`` as the parameter placeholder (``?`` for
# SQLite, ``%s`` for psycopg); values are always passed as parameters, never inlined.


def entity_filter(
    namespace: str, collection: str, package: str | None, mark: str
) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause and parameters of a listing of one collection (of one package)."""
    if package is None:
        return f"namespace = {mark} AND collection = {mark}", (namespace, collection)
    return (
        f"namespace = {mark} AND collection = {mark} AND package = {mark}",
        (namespace, collection, package),
    )


def activation_filter(query: ActivationQuery, mark: str) -> tuple[str, tuple[str | int, ...]]:
    """The WHERE clause and parameters of ``query`` (its paging aside)."""
    clauses = [f"namespace = {mark}"]
    params: list[str | int] = [query.namespace]
    for clause, value in (
        (f"name = {mark}", query.name),
        (f"start >= {mark}", query.since),
        (f"start <= {mark}", query.upto),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return " AND ".join(clauses), tuple(params)
