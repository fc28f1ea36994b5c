"""Triggers: named event channels; rules attach actions to them."""

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
from squall.entities.names import EntityPath


@dataclass(frozen=True, slots=True)
class Trigger:
    path: EntityPath
    version: str = INITIAL_VERSION
    publish: bool = False
    parameters: params.KeyValues = field(default_factory=list)
    annotations: params.KeyValues = field(default_factory=list)
    # "ns/rule" → {"action": {"name", "path"}, "status": "active" | "inactive"}
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    updated: int = 0
    rev: str = ""

    @classmethod
    def create(cls, path: EntityPath, body: object) -> Trigger:
        raw = require_object(body)
        return cls(path=path, **created_fields(raw))

    def update(self, body: object) -> Trigger:
        raw = require_object(body)
        return replace(self, **updated_fields(raw, self, self.parameters))

    def with_rule(self, rule_key: str, entry: dict[str, Any] | None) -> Trigger:
        """This trigger with rule ``rule_key`` attached (``entry``) or detached (None)."""
        rules = dict(self.rules)
        if entry is None:
            rules.pop(rule_key, None)
        else:
            rules[rule_key] = entry
        return replace(self, rules=rules)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "namespace": self.path.namespace,
            "name": self.path.name,
            "version": self.version,
            "publish": self.publish,
            "parameters": self.parameters,
            "annotations": self.annotations,
            "limits": {},
            "updated": self.updated,
        }
        if self.rules:
            out["rules"] = self.rules
        return out

    def summary_json(self) -> dict[str, Any]:
        return {
            "namespace": self.path.namespace,
            "name": self.path.name,
            "version": self.version,
            "publish": self.publish,
            "annotations": self.annotations,
            "updated": self.updated,
        }

    def to_store(self) -> dict[str, Any]:
        body = self.to_json()
        body.pop("updated")
        body["rules"] = self.rules
        return body

    @classmethod
    def from_store(cls, path: EntityPath, body: dict[str, Any], rev: str, updated: int) -> Trigger:
        return cls(
            path=path,
            **stored_fields(body),
            rules=dict(body.get("rules") or {}),
            updated=updated,
            rev=rev,
        )
