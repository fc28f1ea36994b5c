"""Actions: code (or, later, a sequence) plus parameters, limits and annotations."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from squall.entities import params
from squall.entities.common import (
    INITIAL_VERSION,
    bump_patch,
    check_publish,
    check_version,
    require_object,
)
from squall.entities.kinds import CodeExec
from squall.entities.limits import ActionLimits
from squall.entities.names import EntityPath
from squall.errors import BadRequest


@dataclass(frozen=True, slots=True)
class Action:
    path: EntityPath
    exec: CodeExec
    version: str = INITIAL_VERSION
    publish: bool = False
    parameters: params.KeyValues = field(default_factory=list)
    annotations: params.KeyValues = field(default_factory=list)
    limits: ActionLimits = field(default_factory=ActionLimits)
    updated: int = 0
    rev: str = ""

    # -- requests ---------------------------------------------------------------------

    @classmethod
    def create(cls, path: EntityPath, body: object) -> Action:
        """A new action from a PUT body; ``exec`` is required."""
        raw = require_object(body)
        if "exec" not in raw or raw["exec"] is None:
            raise BadRequest("The request content was malformed:\n'exec' must be defined.")
        exec_ = CodeExec.from_request(raw["exec"])
        annotations = params.parse_key_values(raw.get("annotations"), "annotations")
        return cls(
            path=path,
            exec=exec_,
            version=check_version(raw.get("version")) or INITIAL_VERSION,
            publish=check_publish(raw.get("publish")) or False,
            parameters=params.parse_key_values(raw.get("parameters"), "parameters"),
            annotations=params.set_value(annotations, "exec", exec_.kind),
            limits=ActionLimits.from_json(raw.get("limits")),
        )

    def update(self, body: object) -> Action:
        """This action changed by a PUT body with ``overwrite=true``.

        Unspecified fields are kept, partial limits merge, annotations merge key by key,
        and the patch version is bumped.
        """
        raw = require_object(body)
        exec_ = CodeExec.from_request(raw["exec"]) if raw.get("exec") is not None else self.exec
        parameters = (
            params.parse_key_values(raw["parameters"], "parameters")
            if raw.get("parameters") is not None
            else self.parameters
        )
        annotations = params.merge(
            self.annotations, params.parse_key_values(raw.get("annotations"), "annotations")
        )
        publish = check_publish(raw.get("publish"))
        return replace(
            self,
            exec=exec_,
            version=bump_patch(self.version),
            publish=self.publish if publish is None else publish,
            parameters=parameters,
            annotations=params.set_value(annotations, "exec", exec_.kind),
            limits=ActionLimits.from_json(raw.get("limits"), self.limits),
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
            exec=CodeExec.from_stored(body["exec"]),
            version=body.get("version", INITIAL_VERSION),
            publish=bool(body.get("publish", False)),
            parameters=list(body.get("parameters", [])),
            annotations=list(body.get("annotations", [])),
            limits=ActionLimits.from_stored(body.get("limits", {})),
            updated=updated,
            rev=rev,
        )
