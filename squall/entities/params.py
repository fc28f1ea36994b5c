"""Parameters and annotations: OpenWhisk's ``[{"key": k, "value": v}]`` lists.

Both keep insertion order and have at most one entry per key; merging lets the later
list win per key. Parameters may carry ``init: true`` (delivered to /init as environment).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from squall.errors import BadRequest, PayloadTooLarge

MAX_PARAMETERS_BYTES = 1024 * 1024

KeyValues = list[dict[str, Any]]


def parse_key_values(raw: object, field: str) -> KeyValues:
    """Validate a ``[{key, value[, init]}]`` list from a request body."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadRequest(f"The request content was malformed:\n'{field}' must be an array.")
    seen: dict[str, dict[str, Any]] = {}
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise BadRequest(
                f"The request content was malformed:\n'{field}' entries must be objects with "
                "a string 'key'."
            )
        entry: dict[str, Any] = {"key": item["key"], "value": item.get("value")}
        if item.get("init") is True:
            entry["init"] = True
        seen[item["key"]] = entry
    result = list(seen.values())
    size = len(orjson.dumps(result))
    if size > MAX_PARAMETERS_BYTES:
        raise PayloadTooLarge(
            f"{field.capitalize()} larger than allowed: {size} > {MAX_PARAMETERS_BYTES} bytes."
        )
    return result


def merge(base: Iterable[Mapping[str, Any]], override: Iterable[Mapping[str, Any]]) -> KeyValues:
    """``base`` with every key of ``override`` replaced or appended (override wins)."""
    merged: dict[str, dict[str, Any]] = {str(kv["key"]): dict(kv) for kv in base}
    for kv in override:
        merged[str(kv["key"])] = dict(kv)
    return list(merged.values())


def get(kvs: Iterable[Mapping[str, Any]], key: str, default: Any = None) -> Any:
    for kv in kvs:
        if kv.get("key") == key:
            return kv.get("value")
    return default


def set_value(kvs: Iterable[Mapping[str, Any]], key: str, value: Any) -> KeyValues:
    return merge(kvs, [{"key": key, "value": value}])


def as_dict(kvs: Iterable[Mapping[str, Any]], *, init: bool | None = None) -> dict[str, Any]:
    """The parameters as an argument object; ``init`` filters on the init flag."""
    out: dict[str, Any] = {}
    for kv in kvs:
        if init is None or bool(kv.get("init")) == init:
            out[str(kv["key"])] = kv.get("value")
    return out
