"""Pieces shared by every entity: semantic versions and the request-body checks."""

from __future__ import annotations

from typing import Any

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
