"""Messages between controllers and invokers: versioned JSON, one schema each.

Every message is frozen, with ``to_bytes`` / ``from_bytes``: those that carry an
activation (``ActivationMessage``, ``Completion``, ``Redispatch``) are msgspec Structs,
encoded and decoded by msgspec (typed, without an intermediate dict), the rare ones
(pings, invalidations) dataclasses over orjson; the JSON shape is the same either way.
The version field ``v`` lets a newer controller and an older invoker detect each other
during a rolling upgrade; a message of an unknown version is rejected, never half-read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import msgspec
import orjson

from squall.entities.activation import Activation, pending_record

SCHEMA_VERSION: Literal[1] = 1


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


class _Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", rename="camel"):
    """A message encoded by msgspec: ``t`` is its tag, ``v`` its schema version (any
    other version is rejected while decoding: a ``Literal``, checked by msgspec itself,
    without a Python hook on the hot path)."""

    v: Literal[1] = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return _encoder.encode(self)


_encoder = msgspec.json.Encoder()


class ActivationMessage(_Message, frozen=True, tag="activation"):
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

    JSON keys are the camelCase field names (``activationId``, ``acceptedMs``, ...);
    the fields an older controller did not send have defaults.
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
    init_args: dict[str, Any] = {}
    cause: str | None = None
    caused_by: str | None = None
    store_record: bool = True
    network: str | None = None
    started: bool = False

    @classmethod
    def from_bytes(cls, data: bytes) -> ActivationMessage:
        return _decode(_activation_decoder, data, "activation")

    def caused_by_annotation(self) -> list[dict[str, Any]]:
        """The record's ``causedBy`` annotation, for a step of a sequence or composition."""
        return [{"key": "causedBy", "value": self.caused_by}] if self.caused_by else []

    def unstarted_record(self) -> Activation:
        """The pending record to mark started from the message alone (its action may have
        been removed): the invoker's, or the recovering controller's before it moves it."""
        path = self.action.lstrip("/")
        return pending_record(
            namespace=self.namespace,
            subject=self.subject,
            activation_id=self.activation_id,
            name=path.rsplit("/", 1)[-1],
            path=path,
            version="",
            accepted_ms=self.accepted_ms,
            annotations=self.caused_by_annotation(),
            cause=self.cause,
        )


class Completion(_Message, frozen=True, tag="completion"):
    """An activation ended; ``record`` is the full activation as stored."""

    transid: str
    activation_id: str
    invoker: str
    record: Activation

    @classmethod
    def from_bytes(cls, data: bytes) -> Completion:
        return _decode(_completion_decoder, data, "completion")


class Redispatch(_Message, frozen=True, tag="redispatch"):
    """An activation taken off a dead invoker's queue by another controller, handed to
    the controller that accepted it (on its completion topic): that controller routes it
    to a healthy invoker and keeps counting it as its own."""

    message: ActivationMessage
    from_invoker: str

    @classmethod
    def from_bytes(cls, data: bytes) -> Redispatch:
        return _decode(_redispatch_decoder, data, "redispatch")


T = TypeVar("T")

_activation_decoder = msgspec.json.Decoder(ActivationMessage)
_completion_decoder = msgspec.json.Decoder(Completion)
_redispatch_decoder = msgspec.json.Decoder(Redispatch)
_inbox_decoder = msgspec.json.Decoder(Completion | Redispatch)


def _decode(decoder: msgspec.json.Decoder[T], data: bytes, kind: str) -> T:
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as e:
        raise MessageError(f"{kind}: {e}") from e


def decode_inbox(data: bytes) -> Completion | Redispatch:
    """A message on a controller's completion topic, decoded once whichever it is."""
    return _decode(_inbox_decoder, data, "completion or redispatch")


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
