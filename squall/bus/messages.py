"""Messages between controllers and invokers: versioned JSON, one schema each.

Every message is a frozen dataclass with ``to_bytes`` / ``from_bytes``. The version field
``v`` lets a newer controller and an older invoker detect each other during a rolling
upgrade; a message of an unknown version is rejected, never half-read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

SCHEMA_VERSION = 1


class MessageError(ValueError):
    """A message that does not match its schema."""


def _load(data: bytes, kind: str) -> dict[str, Any]:
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise MessageError(f"{kind}: not JSON: {e}") from e
    if not isinstance(raw, dict) or raw.get("v") != SCHEMA_VERSION or raw.get("t") != kind:
        raise MessageError(f"{kind}: unexpected type or schema version")
    return raw


@dataclass(frozen=True, slots=True)
class ActivationMessage:
    """Run ``action`` (a fully qualified name at ``revision``) with ``content``.

    ``namespace`` / ``subject`` identify the caller; ``init_args`` are the action's
    ``init: true`` parameters; ``accepted_ms`` is when the controller accepted the request
    (for ``waitTime``); ``controller`` names the controller waiting for the completion.
    ``cause`` is the id of the activation that caused this one (e.g. the enclosing
    sequence); ``caused_by`` is the record's ``causedBy`` annotation (``"sequence"`` for
    steps of a sequence or composition), written by the invoker when set.
    ``store_record`` False: the invoker does not store the record (the namespace's
    ``storeActivations`` limit is off); the completion still carries it. ``network`` is
    the namespace's ``network`` limit (``"egress"`` or ``"none"``), None for the invoker's
    default. ``started`` True: the controller that moved it off a dead invoker already
    marked it started in the store for this run (``ActivationStore.start``), which fences
    the dead invoker out; the invoker that gets it runs it without marking it again.
    """

    transid: str
    activation_id: str
    namespace: str
    subject: str
    action: str  # "/ns[/pkg]/name"
    revision: str
    content: dict[str, Any]
    blocking: bool
    controller: str
    accepted_ms: int
    init_args: dict[str, Any] = field(default_factory=dict)
    cause: str | None = None
    caused_by: str | None = None
    store_record: bool = True
    network: str | None = None
    started: bool = False

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "v": SCHEMA_VERSION,
                "t": "activation",
                "transid": self.transid,
                "activationId": self.activation_id,
                "namespace": self.namespace,
                "subject": self.subject,
                "action": self.action,
                "revision": self.revision,
                "content": self.content,
                "blocking": self.blocking,
                "controller": self.controller,
                "acceptedMs": self.accepted_ms,
                "initArgs": self.init_args,
                "cause": self.cause,
                "causedBy": self.caused_by,
                "storeRecord": self.store_record,
                "network": self.network,
                "started": self.started,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ActivationMessage:
        raw = _load(data, "activation")
        try:
            return cls(
                transid=str(raw["transid"]),
                activation_id=str(raw["activationId"]),
                namespace=str(raw["namespace"]),
                subject=str(raw["subject"]),
                action=str(raw["action"]),
                revision=str(raw["revision"]),
                content=dict(raw["content"]),
                blocking=bool(raw["blocking"]),
                controller=str(raw["controller"]),
                accepted_ms=int(raw["acceptedMs"]),
                init_args=dict(raw.get("initArgs") or {}),
                cause=raw.get("cause"),
                caused_by=raw.get("causedBy"),
                # Absent in messages of an older controller: stored, as before.
                store_record=bool(raw.get("storeRecord", True)),
                network=raw.get("network"),
                started=bool(raw.get("started", False)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise MessageError(f"activation: {e}") from e


@dataclass(frozen=True, slots=True)
class Completion:
    """An activation ended; ``record`` is the full activation JSON as stored."""

    transid: str
    activation_id: str
    invoker: str
    record: dict[str, Any]

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "v": SCHEMA_VERSION,
                "t": "completion",
                "transid": self.transid,
                "activationId": self.activation_id,
                "invoker": self.invoker,
                "record": self.record,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Completion:
        raw = _load(data, "completion")
        try:
            return cls(
                transid=str(raw["transid"]),
                activation_id=str(raw["activationId"]),
                invoker=str(raw["invoker"]),
                record=dict(raw["record"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise MessageError(f"completion: {e}") from e


def invoker_topic(invoker_id: str) -> str:
    return f"invoker.{invoker_id}"


def completion_topic(controller_id: str) -> str:
    return f"completed.{controller_id}"


# Broadcast subjects (every live subscriber gets each message; nothing is stored).
HEALTH_SUBJECT = "health"
INVALIDATION_SUBJECT = "cacheInvalidation"

# Invoker states in pings; the controller derives healthy/unhealthy/unresponsive/offline.
INVOKER_UP = "up"
INVOKER_STOPPING = "stopping"


@dataclass(frozen=True, slots=True)
class InvokerPing:
    """An invoker's heartbeat on ``HEALTH_SUBJECT``, sent every ping interval.

    ``user_memory_mb`` is its capacity (controllers divide it into slots); ``state`` is
    ``INVOKER_UP``, or ``INVOKER_STOPPING`` once it takes no more work (sent once when it
    shuts down, so controllers need not wait for silence to route around it)."""

    invoker: str
    user_memory_mb: int
    state: str
    sent_ms: int
    busy_mb: int = 0
    containers: int = 0
    # Chosen at each start: a different one means the invoker restarted (and lost what it
    # was running), however quickly it came back.
    incarnation: str = ""

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "v": SCHEMA_VERSION,
                "t": "ping",
                "incarnation": self.incarnation,
                "invoker": self.invoker,
                "userMemoryMb": self.user_memory_mb,
                "state": self.state,
                "sentMs": self.sent_ms,
                "busyMb": self.busy_mb,
                "containers": self.containers,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> InvokerPing:
        raw = _load(data, "ping")
        try:
            return cls(
                invoker=str(raw["invoker"]),
                user_memory_mb=int(raw["userMemoryMb"]),
                state=str(raw["state"]),
                sent_ms=int(raw["sentMs"]),
                busy_mb=int(raw.get("busyMb", 0)),
                containers=int(raw.get("containers", 0)),
                incarnation=str(raw.get("incarnation", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise MessageError(f"ping: {e}") from e


@dataclass(frozen=True, slots=True)
class Invalidation:
    """An entity changed (put or delete) through ``controller``: other controllers drop
    their cached copy of ``namespace``/``path``."""

    controller: str
    namespace: str
    path: str

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "v": SCHEMA_VERSION,
                "t": "invalidation",
                "controller": self.controller,
                "namespace": self.namespace,
                "path": self.path,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Invalidation:
        raw = _load(data, "invalidation")
        try:
            return cls(str(raw["controller"]), str(raw["namespace"]), str(raw["path"]))
        except (KeyError, TypeError, ValueError) as e:
            raise MessageError(f"invalidation: {e}") from e


@dataclass(frozen=True, slots=True)
class Redispatch:
    """An activation taken off a dead invoker's queue by another controller, handed to
    the controller that accepted it (on its completion topic): that controller routes it
    to a healthy invoker and keeps counting it as its own."""

    message: ActivationMessage
    from_invoker: str

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "v": SCHEMA_VERSION,
                "t": "redispatch",
                "fromInvoker": self.from_invoker,
                "message": orjson.loads(self.message.to_bytes()),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Redispatch:
        raw = _load(data, "redispatch")
        try:
            inner = orjson.dumps(raw["message"])
            return cls(ActivationMessage.from_bytes(inner), str(raw["fromInvoker"]))
        except (KeyError, TypeError, ValueError) as e:
            raise MessageError(f"redispatch: {e}") from e
