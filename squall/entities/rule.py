"""Rules: "when trigger T fires, run action A", active or inactive."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from squall.entities import params
from squall.entities.common import (
    INITIAL_VERSION,
    created_fields,
    require_object,
    stored_fields,
    updated_fields,
)
from squall.entities.names import EntityPath, parse_fqn
from squall.errors import BadRequest

ACTIVE, INACTIVE = "active", "inactive"


def ref_json(path: EntityPath) -> dict[str, str]:
    """OpenWhisk's reduced path form: ``{"name": "a", "path": "ns[/pkg]"}``."""
    return {"name": path.name, "path": path.entity_namespace}


@dataclass(frozen=True, slots=True)
class Rule:
    path: EntityPath
    trigger: EntityPath
    action: EntityPath
    status: str = ACTIVE
    version: str = INITIAL_VERSION
    publish: bool = False
    annotations: params.KeyValues = field(default_factory=list)
    updated: int = 0
    rev: str = ""

    @property
    def key(self) -> str:
        """How the rule is named in its trigger's ``rules`` map: ``ns/rule``."""
        return f"{self.path.namespace}/{self.path.name}"

    @staticmethod
    def _ref(raw: object, field_name: str, namespace: str) -> EntityPath:
        if not isinstance(raw, str) or not raw:
            raise BadRequest(
                f"The request content was malformed:\n'{field_name}' must be a string."
            )
        return parse_fqn(raw, namespace)

    @classmethod
    def create(cls, path: EntityPath, body: object) -> Rule:
        raw = require_object(body)
        if "trigger" not in raw or "action" not in raw:
            raise BadRequest(
                "The request content was malformed:\n'trigger' and 'action' must be defined."
            )
        return cls(
            path=path,
            trigger=cls._ref(raw["trigger"], "trigger", path.namespace),
            action=cls._ref(raw["action"], "action", path.namespace),
            **created_fields(raw, parameters=False),
        )

    def update(self, body: object) -> Rule:
        raw = require_object(body)
        return replace(
            self,
            trigger=self._ref(raw["trigger"], "trigger", self.path.namespace)
            if raw.get("trigger") is not None
            else self.trigger,
            action=self._ref(raw["action"], "action", self.path.namespace)
            if raw.get("action") is not None
            else self.action,
            **updated_fields(raw, self),
        )

    def trigger_entry(self) -> dict[str, Any]:
        return {"action": ref_json(self.action), "status": self.status}

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.path.namespace,
            "name": self.path.name,
            "version": self.version,
            "publish": self.publish,
            "status": self.status,
            "trigger": ref_json(self.trigger),
            "action": ref_json(self.action),
            "annotations": self.annotations,
            "updated": self.updated,
        }

    def summary_json(self) -> dict[str, Any]:
        return self.to_json()

    def to_store(self) -> dict[str, Any]:
        body = self.to_json()
        body.pop("updated")
        body["trigger"] = self.trigger.fqn
        body["action"] = self.action.fqn
        return body

    @classmethod
    def from_store(cls, path: EntityPath, body: dict[str, Any], rev: str, updated: int) -> Rule:
        return cls(
            path=path,
            trigger=parse_fqn(body["trigger"], path.namespace),
            action=parse_fqn(body["action"], path.namespace),
            status=body.get("status", ACTIVE),
            **stored_fields(body, parameters=False),
            updated=updated,
            rev=rev,
        )
