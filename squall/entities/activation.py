"""Activation records and their responses: the four OpenWhisk outcomes as data.

A record has two JSON shapes. The *stored* shape (store rows, bus completions) keeps
``response.statusCode``, which the controller and invoker read (blocking answers' HTTP
status, sequences, web actions). The *REST* shape, :func:`rest_json`, is what
OpenWhisk's ``toExtendedJson`` shows users: ``response`` is ``{status, success, result,
size?}`` with no ``statusCode``, and a record that has not ended (``end`` 0: a trigger's,
or Squall's pending one) has no ``end``. Only the HTTP edge renders the REST shape.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SUCCESS, APPLICATION_ERROR, DEVELOPER_ERROR, WHISK_ERROR = 0, 1, 2, 3
STATUS_NAMES = {
    SUCCESS: "success",
    APPLICATION_ERROR: "application error",
    DEVELOPER_ERROR: "action developer error",
    WHISK_ERROR: "whisk internal error",
}

PENDING = "pending"

# Messages the invoker uses in records (OpenWhisk's wording).
ABNORMAL_INIT = "The action did not initialize and exited unexpectedly."
ABNORMAL_RUN = "The action did not produce a valid response and exited unexpectedly."
INVALID_JSON = "The action did not produce a valid JSON or JSON Array response."
MEMORY_EXHAUSTED = "The action exhausted its memory and was aborted."


def timed_out_message(timeout_ms: int, init: bool) -> str:
    suffix = " during initialization." if init else "."
    return f"The action exceeded its time limits of {timeout_ms} milliseconds{suffix}"


def truncated_response_message(size: int, allowed: int, trunk: str) -> str:
    return (
        f"The action produced a response that exceeded the allowed length: {size} > {allowed} "
        f"bytes. The truncated response was: {trunk}"
    )


def truncated_logs_message(limit_bytes: int) -> str:
    return (
        "Logs were truncated because the total bytes size exceeds the limit of "
        f"{limit_bytes} bytes."
    )


def new_activation_id() -> str:
    return uuid.uuid4().hex


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_log_line(time_ns: int, stream: str, text: str) -> str:
    """``2024-01-01T00:00:00.123456789Z stdout: message`` (OpenWhisk's line format)."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z {stream}: {text}"


@dataclass(frozen=True, slots=True)
class ActivationResponse:
    """An activation's outcome. ``size``, as in OpenWhisk, is set only when a runtime
    answered over HTTP: the length of its answer (see ``invoker/outcomes.py``)."""

    status_code: int
    result: Any = None
    size: int | None = None

    @property
    def success(self) -> bool:
        return self.status_code == SUCCESS

    @classmethod
    def ok(cls, result: Any, size: int | None = None) -> ActivationResponse:
        """A runtime's 200 answer: success, or application error if it carries ``error``."""
        if isinstance(result, dict) and "error" in result:
            return cls(APPLICATION_ERROR, result, size)
        return cls(SUCCESS, result, size)

    @classmethod
    def developer_error(cls, error: Any, size: int | None = None) -> ActivationResponse:
        result = error if isinstance(error, dict) and "error" in error else {"error": error}
        return cls(DEVELOPER_ERROR, result, size)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ActivationResponse:
        """The stored shape back (a record's ``response``); no code reads as a whisk error."""
        size = raw.get("size")
        return cls(
            int(raw.get("statusCode", WHISK_ERROR)),
            raw.get("result"),
            size if isinstance(size, int) else None,
        )

    @classmethod
    def whisk_error(cls, message: str) -> ActivationResponse:
        return cls(WHISK_ERROR, {"error": message})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": STATUS_NAMES[self.status_code],
            "statusCode": self.status_code,
            "success": self.success,
        }
        if self.result is not None:
            out["result"] = self.result
        if self.size is not None:
            out["size"] = self.size
        return out


@dataclass(slots=True)
class Activation:
    """One run of an action; ``namespace`` is the invoking subject's namespace."""

    namespace: str
    name: str
    subject: str
    activation_id: str
    start: int
    end: int
    response: ActivationResponse
    version: str = "0.0.1"
    publish: bool = False
    logs: list[str] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    cause: str | None = None

    @property
    def duration(self) -> int:
        return max(0, self.end - self.start)

    def to_json(self) -> dict[str, Any]:
        """The stored shape. ``end`` 0 means the record has no duration (a trigger's, as
        OpenWhisk stores it), so none is written."""
        out: dict[str, Any] = {
            "namespace": self.namespace,
            "name": self.name,
            "subject": self.subject,
            "activationId": self.activation_id,
            "start": self.start,
            "end": self.end,
            "version": self.version,
            "publish": self.publish,
            "response": self.response.to_json(),
            "logs": self.logs,
            "annotations": self.annotations,
        }
        if self.end:
            out["duration"] = self.duration
        if self.cause:
            out["cause"] = self.cause
        return out


def pending_record(
    *,
    namespace: str,
    subject: str,
    activation_id: str,
    name: str,
    path: str,
    version: str,
    accepted_ms: int,
    annotations: list[dict[str, Any]] | None = None,
    cause: str | None = None,
) -> dict[str, Any]:
    """The record of an accepted activation that has not ended yet.

    Squall stores it before answering 202, so an accepted id is never a 404 (OpenWhisk's
    is until the activation ends). ``response.status`` is ``"pending"`` and there is no
    ``statusCode`` yet; ``end`` and ``duration`` are 0. The final record replaces it.
    """
    record: dict[str, Any] = {
        "namespace": namespace,
        "name": name,
        "subject": subject,
        "activationId": activation_id,
        "start": accepted_ms,
        "end": 0,
        "duration": 0,
        "version": version,
        "publish": False,
        "response": {"status": PENDING, "success": False, "result": {}},
        "logs": [],
        "annotations": [{"key": "path", "value": path}, *(annotations or [])],
    }
    if cause:
        record["cause"] = cause
    return record


def is_pending(record: dict[str, Any]) -> bool:
    return bool(record.get("response", {}).get("status") == PENDING)


def rest_response(response: dict[str, Any]) -> dict[str, Any]:
    """A stored ``response`` as the REST API shows it: without ``statusCode``.

    OpenWhisk hides the code (``ActivationResponse.toExtendedJson``): ``status`` and
    ``success`` say the same. Squall's ``status`` and ``success`` are stored beside it.
    """
    return {k: v for k, v in response.items() if k != "statusCode"}


def rest_json(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record as the REST API shows it (get, ``docs=true`` list, blocking invoke).

    As OpenWhisk's ``WhiskActivation.toExtendedJson``: ``response`` without
    ``statusCode``; a record that has not ended (``end`` 0) has no ``end``, and a
    ``duration`` only if it was stored with one (a pending record's 0; a trigger's has
    none). The stored record is not changed.
    """
    out = dict(record)
    response = record.get("response")
    if isinstance(response, dict):
        out["response"] = rest_response(response)
    if not record.get("end"):
        out.pop("end", None)
    return out


def summary_json(record: dict[str, Any]) -> dict[str, Any]:
    """The list view of a stored record: no logs, no result.

    As OpenWhisk's ``WhiskActivation.summaryAsJson``: ``end``, ``duration`` and the
    response's ``statusCode`` only for a record that has ended, so a trigger's record
    has none of them (``aio rt:activation:list`` shows it as a trigger). A pending record
    keeps its stored ``duration`` 0, so clients still list it as an action.
    """
    response = record.get("response", {})
    out: dict[str, Any] = {
        k: record[k]
        for k in (
            "namespace",
            "name",
            "version",
            "subject",
            "activationId",
            "start",
            "publish",
            "annotations",
            "cause",
        )
        if k in record
    }
    if record.get("end"):
        out["end"] = record["end"]
        out["duration"] = record.get("duration", max(0, record["end"] - record.get("start", 0)))
        if "statusCode" in response:
            out["statusCode"] = response["statusCode"]
    elif "duration" in record:
        out["duration"] = record["duration"]
    return out
