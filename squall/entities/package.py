"""Packages: a named group of actions with shared parameters, or a binding to one."""

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
            version=check_version(raw.get("version")) or INITIAL_VERSION,
            publish=check_publish(raw.get("publish")) or False,
            binding=Binding.parse(raw.get("binding"), path.namespace),
            parameters=params.parse_key_values(raw.get("parameters"), "parameters"),
            annotations=params.parse_key_values(raw.get("annotations"), "annotations"),
        )

    def update(self, body: object) -> Package:
        raw = require_object(body)
        publish = check_publish(raw.get("publish"))
        binding = (
            Binding.parse(raw["binding"], self.path.namespace) if "binding" in raw else self.binding
        )
        return replace(
            self,
            version=bump_patch(self.version),
            publish=self.publish if publish is None else publish,
            binding=binding,
            parameters=params.parse_key_values(raw["parameters"], "parameters")
            if raw.get("parameters") is not None
            else self.parameters,
            annotations=params.merge(
                self.annotations, params.parse_key_values(raw.get("annotations"), "annotations")
            ),
        )

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
            version=body.get("version", INITIAL_VERSION),
            publish=bool(body.get("publish", False)),
            binding=Binding(b["namespace"], b["name"]) if b else None,
            parameters=list(body.get("parameters", [])),
            annotations=list(body.get("annotations", [])),
            updated=updated,
            rev=rev,
        )
