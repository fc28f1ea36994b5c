"""Actions: code or a sequence, plus parameters, limits and annotations."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from msgspec import UNSET

from squall.entities import params
from squall.entities.activation import Activation, ActivationResponse
from squall.entities.common import (
    INITIAL_VERSION,
    created_fields,
    require_object,
    stored_fields,
    updated_fields,
)
from squall.entities.limits import ActionLimits
from squall.entities.names import EntityPath
from squall.entities.sequence import (
    Exec,
    SequenceExec,
    exec_from_request,
    exec_from_stored,
    is_conductor,
    is_truthy,
)
from squall.errors import BadRequest

# Whether the action's runs get an API key (``api_key`` in /run, ``__OW_API_KEY``).
PROVIDE_API_KEY = "provide-api-key"
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class Action:
    path: EntityPath
    exec: Exec
    version: str = INITIAL_VERSION
    publish: bool = False
    parameters: params.KeyValues = field(default_factory=list)
    annotations: params.KeyValues = field(default_factory=list)
    limits: ActionLimits = field(default_factory=ActionLimits)
    updated: int = 0
    rev: str = ""
    # Derived once from the fields above, read on every invoke (an action is immutable,
    # and the controller and invoker keep one per revision): set by ``__post_init__``,
    # again by ``replace``. Not compared, not shown.
    #: Whether a run gets the invoking namespace's API key: its ``provide-api-key``
    #: annotation is truthy, or absent — as in OpenWhisk, where actions created before
    #: the annotation existed keep getting the key (new ones get ``false`` at creation).
    provides_api_key: bool = field(init=False, repr=False, compare=False)
    #: Its ``final`` annotation is ``true``: a defined parameter cannot be overridden.
    final: bool = field(init=False, repr=False, compare=False)
    #: A code action with a truthy ``conductor`` annotation (``sequence.is_conductor``).
    conductor: bool = field(init=False, repr=False, compare=False)
    #: The parameters as argument objects: the run's defaults (not ``init``) and the
    #: ``init`` ones (/init environment). Shared: copy before changing.
    run_defaults: dict[str, Any] = field(init=False, repr=False, compare=False)
    init_defaults: dict[str, Any] = field(init=False, repr=False, compare=False)
    #: ``path.fqn`` (``/ns/name`` or ``/ns/pkg/name``): the run's ``action_name``; and
    #: without its leading ``/``, the records' ``path`` annotation.
    fqn: str = field(init=False, repr=False, compare=False)
    record_path: str = field(init=False, repr=False, compare=False)
    #: ``limits.to_json()``. Shared: a record gets a copy (``{**limits_json}``).
    limits_json: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        value = params.get(self.annotations, PROVIDE_API_KEY, _ABSENT)
        derive = object.__setattr__  # frozen: set once, here
        derive(self, "provides_api_key", value is _ABSENT or is_truthy(value))
        derive(self, "final", params.get(self.annotations, "final") is True)
        derive(self, "conductor", is_conductor(self.exec, self.annotations))
        derive(self, "run_defaults", params.as_dict(self.parameters, init=False))
        derive(self, "init_defaults", params.as_dict(self.parameters, init=True))
        derive(self, "fqn", self.path.fqn)
        derive(self, "record_path", self.fqn.lstrip("/"))
        derive(self, "limits_json", self.limits.to_json())

    # -- requests ---------------------------------------------------------------------

    @classmethod
    def create(
        cls, path: EntityPath, body: object, *, require_api_key_annotation: bool = True
    ) -> Action:
        """A new action from a PUT body; ``exec`` is required.

        With ``require_api_key_annotation`` (OpenWhisk's feature flag of that name, on by
        default there too), a body without a ``provide-api-key`` annotation gets
        ``provide-api-key: false``: new actions get no API key unless they ask for one.
        Only creation adds it; an update never does (see :attr:`provides_api_key`).
        """
        raw = require_object(body)
        if "exec" not in raw or raw["exec"] is None:
            raise BadRequest("The request content was malformed:\n'exec' must be defined.")
        exec_ = exec_from_request(raw["exec"], path.namespace)
        fields = created_fields(raw)
        if isinstance(exec_, SequenceExec):
            # As in OpenWhisk, a sequence's only parameter names its components.
            fields["parameters"] = exec_.parameters()
        annotations = fields["annotations"]
        given = params.get(annotations, PROVIDE_API_KEY, _ABSENT)
        if require_api_key_annotation and given is _ABSENT:
            annotations = params.set_value(annotations, PROVIDE_API_KEY, False)
        fields["annotations"] = params.set_value(annotations, "exec", exec_.kind)
        return cls(
            path=path, exec=exec_, limits=ActionLimits.from_json(raw.get("limits")), **fields
        )

    def update(self, body: object) -> Action:
        """This action changed by a PUT body with ``overwrite=true``.

        Unspecified fields are kept, partial limits merge, annotations merge key by key,
        and the patch version is bumped. Parameters follow OpenWhisk for sequences: a
        new sequence exec sets them to its components, a sequence keeps them whatever
        the body says, and code replacing a sequence does not inherit them.
        """
        raw = require_object(body)
        given = raw.get("exec")
        exec_ = exec_from_request(given, self.path.namespace) if given is not None else self.exec
        fields = updated_fields(raw, self, self.parameters)
        if isinstance(exec_, SequenceExec):
            fields["parameters"] = exec_.parameters() if given is not None else self.parameters
        elif isinstance(self.exec, SequenceExec) and raw.get("parameters") is None:
            fields["parameters"] = []
        fields["annotations"] = params.set_value(fields["annotations"], "exec", exec_.kind)
        return replace(
            self,
            exec=exec_,
            limits=ActionLimits.from_json(raw.get("limits"), self.limits),
            **fields,
        )

    # -- JSON -------------------------------------------------------------------------

    def to_json(self, *, code: bool = True) -> dict[str, Any]:
        return {
            "namespace": self.path.entity_namespace,
            "name": self.path.name,
            "version": self.version,
            "exec": self.exec.to_json(code=code),
            "annotations": self.annotations,
            "parameters": self.parameters,
            "limits": self.limits.to_json(),
            "publish": self.publish,
            "updated": self.updated,
        }

    def summary_json(self) -> dict[str, Any]:
        """The list view: no code, no parameters."""
        return {
            "namespace": self.path.entity_namespace,
            "name": self.path.name,
            "version": self.version,
            "exec": {"binary": self.exec.binary},
            "annotations": self.annotations,
            "limits": self.limits.to_json(),
            "publish": self.publish,
            "updated": self.updated,
        }

    def to_store(self) -> dict[str, Any]:
        body = self.to_json()
        body.pop("updated")
        return body

    @classmethod
    def from_store(cls, path: EntityPath, body: dict[str, Any], rev: str, updated: int) -> Action:
        return cls(
            path=path,
            exec=exec_from_stored(body["exec"]),
            **stored_fields(body),
            limits=ActionLimits.from_stored(body.get("limits", {})),
            updated=updated,
            rev=rev,
        )


def pending_invocation(
    action: Action,
    *,
    namespace: str,
    subject: str,
    activation_id: str,
    accepted_ms: int,
    cause: str | None = None,
    caused_by: str | None = None,
) -> Activation:
    """The pending record of an invocation of ``action`` by ``namespace``/``subject``:
    :func:`~squall.entities.activation.pending_record` with the action's ``kind`` and
    ``limits``, and ``causedBy`` for a step of a sequence or composition. Built here,
    not through ``pending_record`` (the same fields, from the action's derived ones):
    every warm invoke's started mark is one."""
    annotations: list[dict[str, Any]] = [
        {"key": "path", "value": action.record_path},
        {"key": "kind", "value": action.exec.kind},
        {"key": "limits", "value": {**action.limits_json}},
    ]
    if caused_by:
        annotations.append({"key": "causedBy", "value": caused_by})
    return Activation(
        namespace=namespace,
        name=action.path.name,
        subject=subject,
        activation_id=activation_id,
        start=accepted_ms,
        end=0,
        duration=0,
        version=action.version,
        publish=False,
        response=ActivationResponse.waiting(),
        logs=[],
        annotations=annotations,
        cause=cause if cause else UNSET,
    )
