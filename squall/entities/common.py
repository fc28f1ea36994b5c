"""Pieces shared by every entity: semantic versions and the request-body checks."""

from __future__ import annotations

from typing import Any, Protocol

from squall.entities import params
from squall.errors import BadRequest

INITIAL_VERSION = "0.0.1"


def bump_patch(version: str) -> str:
    """``0.0.1`` → ``0.0.2``; OpenWhisk bumps the patch level on every update."""
    major, minor, patch = (int(p) for p in version.split("."))
    return f"{major}.{minor}.{patch + 1}"


def check_version(raw: object) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        parts = raw.split(".")
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            return raw
    raise BadRequest("The request content was malformed:\n'version' must be a semantic version.")


def require_object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("The request content was malformed:\nexpected a JSON object.")
    return body


def check_publish(raw: object) -> bool | None:
    if raw is None or isinstance(raw, bool):
        return raw
    raise BadRequest("The request content was malformed:\n'publish' must be a boolean.")


class Versioned(Protocol):
    """What every entity has: a version, a publish flag, annotations (and parameters)."""

    @property
    def version(self) -> str: ...

    @property
    def publish(self) -> bool: ...

    @property
    def annotations(self) -> params.KeyValues: ...


def created_fields(raw: dict[str, Any], *, parameters: bool = True) -> dict[str, Any]:
    """The shared fields of a new entity from its PUT body."""
    fields: dict[str, Any] = {
        "version": check_version(raw.get("version")) or INITIAL_VERSION,
        "publish": check_publish(raw.get("publish")) or False,
        "annotations": params.parse_key_values(raw.get("annotations"), "annotations"),
    }
    if parameters:
        fields["parameters"] = params.parse_key_values(raw.get("parameters"), "parameters")
    return fields


def updated_fields(
    raw: dict[str, Any], entity: Versioned, current_parameters: params.KeyValues | None = None
) -> dict[str, Any]:
    """The shared fields of an updated entity: the patch version bumps, ``publish`` and
    ``parameters`` are kept unless given, annotations merge key by key.
    ``current_parameters`` is None for entities without parameters (rules)."""
    publish = check_publish(raw.get("publish"))
    given = params.parse_key_values(raw.get("annotations"), "annotations")
    fields: dict[str, Any] = {
        "version": bump_patch(entity.version),
        "publish": entity.publish if publish is None else publish,
        "annotations": params.merge(entity.annotations, given),
    }
    if current_parameters is not None:
        fields["parameters"] = (
            params.parse_key_values(raw["parameters"], "parameters")
            if raw.get("parameters") is not None
            else current_parameters
        )
    return fields


def stored_fields(body: dict[str, Any], *, parameters: bool = True) -> dict[str, Any]:
    """The shared fields of an entity read back from the store."""
    fields: dict[str, Any] = {
        "version": body.get("version", INITIAL_VERSION),
        "publish": bool(body.get("publish", False)),
        "annotations": list(body.get("annotations", [])),
    }
    if parameters:
        fields["parameters"] = list(body.get("parameters", []))
    return fields
