"""Action limits: timeout, memory, logs, concurrency, with OpenWhisk's ranges and messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from squall.errors import BadRequest

MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, DEFAULT_TIMEOUT_MS = 100, 300_000, 60_000
MIN_MEMORY_MB, MAX_MEMORY_MB, DEFAULT_MEMORY_MB = 128, 512, 256
MIN_LOGS_MB, MAX_LOGS_MB, DEFAULT_LOGS_MB = 0, 10, 10
MIN_CONCURRENCY, DEFAULT_CONCURRENCY = 1, 1
# OpenWhisk's default maximum is 1 (no intra-container concurrency); Node.js runtimes here
# handle many runs per container, so the platform allows up to this many.
MAX_CONCURRENCY = 500

_MALFORMED = "The request content was malformed:\nrequirement failed: "


def _int_field(raw: dict[str, Any], field: str) -> int | None:
    value = raw.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise BadRequest(f"The request content was malformed:\n'{field}' must be an integer.")
    return int(value)


def _check(value: int, low: int, high: int, what: str, unit: str) -> int:
    if value < low:
        raise BadRequest(
            f"{_MALFORMED}{what} {value} {unit} below allowed threshold of {low} {unit}"
        )
    if value > high:
        raise BadRequest(
            f"{_MALFORMED}{what} {value} {unit} exceeds allowed threshold of {high} {unit}"
        )
    return value


@dataclass(frozen=True, slots=True)
class ActionLimits:
    timeout: int = DEFAULT_TIMEOUT_MS  # milliseconds
    memory: int = DEFAULT_MEMORY_MB  # megabytes
    logs: int = DEFAULT_LOGS_MB  # megabytes
    concurrency: int = DEFAULT_CONCURRENCY

    def to_json(self) -> dict[str, int]:
        return {
            "timeout": self.timeout,
            "memory": self.memory,
            "logs": self.logs,
            "concurrency": self.concurrency,
        }

    @classmethod
    def from_json(cls, raw: object, base: ActionLimits | None = None) -> ActionLimits:
        """Parse (partial) limits; missing fields come from ``base`` (or the defaults)."""
        base = base or cls()
        if raw is None:
            return base
        if not isinstance(raw, dict):
            raise BadRequest("The request content was malformed:\n'limits' must be an object.")
        timeout = _int_field(raw, "timeout")
        memory = _int_field(raw, "memory")
        logs = _int_field(raw, "logs")
        concurrency = _int_field(raw, "concurrency")
        return cls(
            timeout=base.timeout
            if timeout is None
            else _check(timeout, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, "duration", "milliseconds"),
            memory=base.memory
            if memory is None
            else _check(memory, MIN_MEMORY_MB, MAX_MEMORY_MB, "memory", "MB"),
            logs=base.logs
            if logs is None
            else _check(logs, MIN_LOGS_MB, MAX_LOGS_MB, "log size", "MB"),
            concurrency=base.concurrency
            if concurrency is None
            else _check(
                concurrency, MIN_CONCURRENCY, MAX_CONCURRENCY, "concurrency", "activations"
            ),
        )

    @classmethod
    def from_stored(cls, raw: dict[str, Any]) -> ActionLimits:
        return cls(
            timeout=int(raw.get("timeout", DEFAULT_TIMEOUT_MS)),
            memory=int(raw.get("memory", DEFAULT_MEMORY_MB)),
            logs=int(raw.get("logs", DEFAULT_LOGS_MB)),
            concurrency=int(raw.get("concurrency", DEFAULT_CONCURRENCY)),
        )
