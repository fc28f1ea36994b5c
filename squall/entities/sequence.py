"""Sequences and conductor actions: actions the controller runs itself, step by step.

A *sequence* is an action whose ``exec`` lists other actions (``{"kind": "sequence",
"components": ["/ns/a", "/ns/pkg/b"]}``); a *conductor* is a code action with a truthy
``conductor`` annotation that decides at run time which action runs next. Neither is sent
to an invoker as a whole: the controller runs their components (``controller/sequences.py``,
``controller/conductors.py``). This module holds only their data and OpenWhisk's JSON rules.

Component references follow OpenWhisk: fully qualified, ``/namespace[/package]/name``
(the leading slash optional), ``_`` standing for the namespace of the sequence's owner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from squall.entities import params
from squall.entities.kinds import CodeExec
from squall.entities.names import (
    DEFAULT_NAMESPACE,
    MALFORMED_FQN,
    EntityPath,
    check_name,
    check_namespace,
)
from squall.errors import BadRequest

SEQUENCE_KIND = "sequence"
# OpenWhisk keeps a sequence's components as its only parameter (a relic of the
# pipe-action era that ``wsk action get`` still shows); Squall stores the same.
ACTIONS_PARAMETER = "_actions"
CONDUCTOR_ANNOTATION = "conductor"

# OpenWhisk's messages (common/scala/.../http/ErrorResponse.scala).
TOO_LONG = "Too many actions in the sequence."
NO_COMPONENT = "No component specified for the sequence."
CYCLIC = "Sequence may not refer to itself."
COMPONENT_MISSING = "Sequence component does not exist."
SEQUENCE_FAILED = "Sequence failed."

_MALFORMED = "The request content was malformed:\n"


def parse_component(value: object, namespace: str) -> EntityPath:
    """A component reference: ``/ns/name``, ``/ns/pkg/name`` (or without the leading
    slash); ``_`` resolves to ``namespace``. Anything else is a 400."""
    if not isinstance(value, str):
        raise BadRequest(f"{_MALFORMED}{MALFORMED_FQN}")
    parts = value.strip().removeprefix("/").split("/")
    if len(parts) not in (2, 3) or any(not p for p in parts):
        raise BadRequest(f"{_MALFORMED}{MALFORMED_FQN}")
    owner = namespace if parts[0] == DEFAULT_NAMESPACE else check_namespace(parts[0])
    names = [check_name(p) for p in parts[1:]]
    if len(names) == 2:
        return EntityPath(owner, names[0], names[1])
    return EntityPath(owner, "", names[0])


@dataclass(frozen=True, slots=True)
class SequenceExec:
    """The ``exec`` of a sequence: its components, fully qualified, in order.

    It has the ``kind`` and ``binary`` of every exec so list views and annotations need
    no special case; it has no code.
    """

    components: tuple[EntityPath, ...]

    @property
    def kind(self) -> str:
        return SEQUENCE_KIND

    @property
    def binary(self) -> bool:
        return False

    def to_json(self, *, code: bool = True) -> dict[str, Any]:
        # ``code`` is accepted for symmetry with CodeExec: a sequence shows its
        # components whether or not code was asked for, as OpenWhisk does.
        return {"kind": SEQUENCE_KIND, "components": [c.fqn for c in self.components]}

    def parameters(self) -> params.KeyValues:
        """The parameters OpenWhisk gives a sequence: only ``_actions``, its components."""
        return [{"key": ACTIONS_PARAMETER, "value": [c.fqn for c in self.components]}]

    @classmethod
    def from_request(cls, raw: Mapping[str, Any], namespace: str) -> SequenceExec:
        """Parse ``components``; ``_`` becomes ``namespace``. Emptiness and length are
        checked by the controller, which knows the limit (and OpenWhisk's order)."""
        components = raw.get("components")
        if components is None:
            raise BadRequest(f"{_MALFORMED}'components' must be defined for sequence kind")
        if not isinstance(components, list):
            raise BadRequest(f"{_MALFORMED}'components' must be an array")
        return cls(tuple(parse_component(c, namespace) for c in components))

    @classmethod
    def from_stored(cls, raw: Mapping[str, Any]) -> SequenceExec:
        # Stored components are fully qualified, so no namespace is ever substituted.
        return cls(tuple(parse_component(c, DEFAULT_NAMESPACE) for c in raw["components"]))


Exec = CodeExec | SequenceExec


def _is_sequence(raw: Mapping[str, Any]) -> bool:
    kind = raw.get("kind")
    return isinstance(kind, str) and kind.strip().lower() == SEQUENCE_KIND


def exec_from_request(raw: object, namespace: str) -> Exec:
    """The ``exec`` of a PUT body: a sequence or code (400 for anything malformed)."""
    if isinstance(raw, dict) and _is_sequence(raw):
        return SequenceExec.from_request(raw, namespace)
    return CodeExec.from_request(raw)


def exec_from_stored(raw: dict[str, Any]) -> Exec:
    if _is_sequence(raw):
        return SequenceExec.from_stored(raw)
    return CodeExec.from_stored(raw)


def is_truthy(value: Any) -> bool:
    """OpenWhisk's truthiness of an annotation value (``Parameters.isTruthy``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value != ""
    return value is not None


def is_conductor(exec_: Exec, annotations: Iterable[Mapping[str, Any]]) -> bool:
    """A code action with a truthy ``conductor`` annotation (on a sequence it means
    nothing, as in OpenWhisk)."""
    return isinstance(exec_, CodeExec) and is_truthy(params.get(annotations, CONDUCTOR_ANNOTATION))
