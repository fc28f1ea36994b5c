"""Packages: a named group of actions with shared parameters, or a binding to one."""

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
from squall.entities.names import EntityPath, check_name, check_namespace
from squall.errors import BadRequest

RESERVED_NAMES = frozenset({"default"})


@dataclass(frozen=True, slots=True)
class Binding:
    namespace: str
    name: str

    def to_json(self) -> dict[str, str]:
        return {"namespace": self.namespace, "name": self.name}

    @classmethod
    def parse(cls, raw: object, default_namespace: str) -> Binding | None:
        """``{}`` or absent → no binding; ``{"namespace", "name"}`` → a binding."""
        if raw is None or raw == {}:
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise BadRequest(
                "The request content was malformed:\n'binding' must be an object with "
                "'namespace' and 'name'."
            )
        namespace = raw.get("namespace") or default_namespace
        if not isinstance(namespace, str):
            raise BadRequest("The request content was malformed:\n'namespace' must be a string.")
        if namespace == "_":
            namespace = default_namespace
        return cls(check_namespace(namespace), check_name(raw["name"]))


@dataclass(frozen=True, slots=True)
class Package:
    path: EntityPath
    version: str = INITIAL_VERSION
    publish: bool = False
    binding: Binding | None = None
    parameters: params.KeyValues = field(default_factory=list)
    annotations: params.KeyValues = field(default_factory=list)
    updated: int = 0
    rev: str = ""

    @classmethod
    def create(cls, path: EntityPath, body: object) -> Package:
        raw = require_object(body)
        return cls(
            path=path,
            binding=Binding.parse(raw.get("binding"), path.namespace),
            **created_fields(raw),
        )

    def update(self, body: object) -> Package:
        raw = require_object(body)
        binding = (
            Binding.parse(raw["binding"], self.path.namespace) if "binding" in raw else self.binding
        )
        return replace(self, binding=binding, **updated_fields(raw, self, self.parameters))

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.path.namespace,
            "name": self.path.name,
            "version": self.version,
            "publish": self.publish,
            "binding": self.binding.to_json() if self.binding else {},
            "parameters": self.parameters,
            "annotations": self.annotations,
            "updated": self.updated,
        }

    def summary_json(self) -> dict[str, Any]:
        return {
            "namespace": self.path.namespace,
            "name": self.path.name,
            "version": self.version,
            "publish": self.publish,
            "binding": self.binding.to_json() if self.binding else False,
            "annotations": self.annotations,
            "updated": self.updated,
        }

    def to_store(self) -> dict[str, Any]:
        body = self.to_json()
        body.pop("updated")
        return body

    @classmethod
    def from_store(cls, path: EntityPath, body: dict[str, Any], rev: str, updated: int) -> Package:
        b = body.get("binding") or None
        return cls(
            path=path,
            binding=Binding(b["namespace"], b["name"]) if b else None,
            **stored_fields(body),
            updated=updated,
            rev=rev,
        )
