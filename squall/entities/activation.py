"""Activation records and their responses: the four OpenWhisk outcomes as data.

:class:`Activation` and :class:`ActivationResponse` are msgspec Structs: the record is
typed from the invoker through the bus, the store, the waiters and the composer, and
becomes JSON only where bytes go out or come in (:func:`encode` / :func:`decode`, the
store's rows, the bus's completions, the REST routes). Their field names and omissions
make the *stored* shape byte-compatible with what Squall always stored, so records in an
existing SQLite or PostgreSQL store decode unchanged, and unknown keys are ignored.

A record has two JSON shapes. The *stored* shape (store rows, bus completions) keeps
``response.statusCode``, which the controller and invoker read (blocking answers' HTTP
status, sequences, web actions). The *REST* shape, :func:`rest_json`, is what
OpenWhisk's ``toExtendedJson`` shows users: ``response`` is ``{status, success, result,
size?}`` with no ``statusCode``, and a record that has not ended (``end`` 0: a trigger's,
or Squall's pending one) has no ``end``. Only the HTTP edge renders the REST shape.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

SUCCESS, APPLICATION_ERROR, DEVELOPER_ERROR, WHISK_ERROR = 0, 1, 2, 3
STATUS_NAMES = {
    SUCCESS: "success",
    APPLICATION_ERROR: "application error",
    DEVELOPER_ERROR: "action developer error",
    WHISK_ERROR: "whisk internal error",
}

PENDING = "pending"
_SUCCESS_NAME, _APPLICATION_ERROR_NAME = STATUS_NAMES[SUCCESS], STATUS_NAMES[APPLICATION_ERROR]

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
    """A random version-4 UUID as 32 lowercase hex digits (OpenWhisk's activation id
    shape), as ``uuid.uuid4().hex`` gives it but without building a ``UUID`` (~4 µs of a
    warm invoke's ~800 µs: once per invoke)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_log_line(time_ns: int, stream: str, text: str) -> str:
    """``2024-01-01T00:00:00.123456789Z stdout: message`` (OpenWhisk's line format)."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z {stream}: {text}"


class ActivationResponse(
    msgspec.Struct, frozen=True, omit_defaults=True, rename={"status_code": "statusCode"}
):
    """An activation's outcome, in its stored shape ``{status, statusCode, success,
    result?, size?}``. A pending record's has no ``statusCode`` (None), which reads as a
    whisk error (:attr:`code`). ``size``, as in OpenWhisk, is set only when a runtime
    answered over HTTP: the length of its answer (see ``invoker/outcomes.py``)."""

    status: str
    success: bool
    status_code: int | None = None
    result: Any = None
    size: int | None = None

    @property
    def code(self) -> int:
        """The status code; a response without one (pending) reads as a whisk error."""
        return WHISK_ERROR if self.status_code is None else self.status_code

    @property
    def pending(self) -> bool:
        return self.status == PENDING

    @classmethod
    def of(
        cls, status_code: int, result: Any = None, size: int | None = None
    ) -> ActivationResponse:
        """The response with one of the four status codes."""
        return cls(STATUS_NAMES[status_code], status_code == SUCCESS, status_code, result, size)

    @classmethod
    def ok(cls, result: Any, size: int | None = None) -> ActivationResponse:
        """A runtime's 200 answer: success, or application error if it carries ``error``."""
        if isinstance(result, dict) and "error" in result:
            return cls(_APPLICATION_ERROR_NAME, False, APPLICATION_ERROR, result, size)
        return cls(_SUCCESS_NAME, True, SUCCESS, result, size)

    @classmethod
    def developer_error(cls, error: Any, size: int | None = None) -> ActivationResponse:
        result = error if isinstance(error, dict) and "error" in error else {"error": error}
        return cls.of(DEVELOPER_ERROR, result, size)

    @classmethod
    def whisk_error(cls, message: str) -> ActivationResponse:
        return cls.of(WHISK_ERROR, {"error": message})

    @classmethod
    def waiting(cls) -> ActivationResponse:
        """The response of a pending record: ``{"status": "pending", "success": false,
        "result": {}}``."""
        return cls(PENDING, False, None, {})

    def to_json(self) -> dict[str, Any]:
        """The stored shape as a dict."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


class Activation(msgspec.Struct, kw_only=True, rename="camel"):
    """One run of an action (or a trigger's fire, or a sequence's run), in its stored
    shape; ``namespace`` is the invoking subject's namespace.

    ``duration`` is absent (UNSET) for a record that has none (a trigger's, whose
    ``end`` is 0); :func:`final_record` sets ``end - start``, a sequence the sum of its
    steps, a pending record 0. ``cause`` is absent (UNSET) unless another activation
    caused this one (read it with :attr:`caused_by_id`).

    No ``__post_init__``: decoding is the hot path (every completion, every read of the
    store), and a Python hook on it costs more than the decoding itself.
    """

    namespace: str
    name: str
    subject: str = ""
    activation_id: str
    start: int
    end: int = 0
    duration: int | UnsetType = UNSET
    version: str = "0.0.1"
    publish: bool = False
    response: ActivationResponse
    logs: list[str] = []
    annotations: list[dict[str, Any]] = []
    cause: str | UnsetType = UNSET

    @property
    def pending(self) -> bool:
        """Accepted, not ended (its final record will replace it)."""
        return self.response.pending

    @property
    def caused_by_id(self) -> str | None:
        """The id of the activation that caused this one, or None."""
        return self.cause if isinstance(self.cause, str) else None

    def annotation(self, key: str) -> Any:
        """The value of annotation ``key``, or None."""
        for item in self.annotations:
            if item.get("key") == key:
                return item.get("value")
        return None

    def to_json(self) -> dict[str, Any]:
        """The stored shape as a dict (a copy: changing it does not change the record)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Activation)
#: ``encode`` itself, the encoder's bound method (for callers on the hot path).
encode_record = _encoder.encode


def encode(record: Activation) -> bytes:
    """The stored JSON shape of ``record``."""
    return _encoder.encode(record)


def decode(data: bytes | str) -> Activation:
    """A record from its stored JSON (unknown keys ignored); ``msgspec.DecodeError`` (a
    ``ValueError``) when it is not one."""
    return _decoder.decode(data)


def from_builtins(raw: Any) -> Activation:
    """A record from its stored shape already parsed into dicts and lists (validated as
    :func:`decode` validates)."""
    return msgspec.convert(raw, Activation)


def cause_field(cause: str | None) -> str | UnsetType:
    """``cause`` as the record's field: no cause is no key at all (never ``null``)."""
    return cause if cause else UNSET


def final_record(
    *,
    namespace: str,
    name: str,
    subject: str,
    activation_id: str,
    start: int,
    end: int,
    response: ActivationResponse,
    version: str = "0.0.1",
    logs: list[str] | None = None,
    annotations: list[dict[str, Any]] | None = None,
    cause: str | None = None,
) -> Activation:
    """The record of a run that ended at ``end``: its ``duration`` is ``end - start``
    (never negative)."""
    return Activation(
        namespace=namespace,
        name=name,
        subject=subject,
        activation_id=activation_id,
        start=start,
        end=end,
        duration=max(0, end - start),
        version=version,
        response=response,
        logs=[] if logs is None else logs,
        annotations=[] if annotations is None else annotations,
        cause=cause if cause else UNSET,  # ``cause_field``, inline: every record
    )


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
) -> Activation:
    """The record of an accepted activation that has not ended yet.

    Squall stores it before answering 202, so an accepted id is never a 404 (OpenWhisk's
    is until the activation ends). ``response.status`` is ``"pending"`` and there is no
    ``statusCode`` yet; ``end`` and ``duration`` are 0. The final record replaces it.
    """
    return Activation(
        namespace=namespace,
        name=name,
        subject=subject,
        activation_id=activation_id,
        start=accepted_ms,
        end=0,
        duration=0,
        version=version,
        publish=False,
        response=ActivationResponse.waiting(),
        logs=[],
        annotations=[{"key": "path", "value": path}, *(annotations or [])],
        cause=cause if cause else UNSET,  # ``cause_field``, inline: every record
    )


def ended(record: Activation, response: ActivationResponse, end: int | None = None) -> Activation:
    """``record`` (pending) ended with ``response`` at ``end`` (now when None); its
    stored ``duration`` is kept (a pending record's 0: it never ran here)."""
    return msgspec.structs.replace(record, end=now_ms() if end is None else end, response=response)


def is_pending(record: Activation) -> bool:
    return record.pending


def rest_response(response: ActivationResponse) -> dict[str, Any]:
    """A stored ``response`` as the REST API shows it: without ``statusCode``.

    OpenWhisk hides the code (``ActivationResponse.toExtendedJson``): ``status`` and
    ``success`` say the same. Squall's ``status`` and ``success`` are stored beside it.
    """
    out: dict[str, Any] = {"status": response.status, "success": response.success}
    if response.result is not None:
        out["result"] = response.result
    if response.size is not None:
        out["size"] = response.size
    return out


def rest_json(record: Activation) -> dict[str, Any]:
    """A record as the REST API shows it (get, ``docs=true`` list, blocking invoke).

    As OpenWhisk's ``WhiskActivation.toExtendedJson``: ``response`` without
    ``statusCode``; a record that has not ended (``end`` 0) has no ``end``, and a
    ``duration`` only if it was stored with one (a pending record's 0; a trigger's has
    none).
    """
    # Built field by field: cheaper than to_builtins and a copy (this is the answer of
    # every blocking invoke). The values are the record's own (shared, not copied).
    out: dict[str, Any] = {
        "namespace": record.namespace,
        "name": record.name,
        "subject": record.subject,
        "activationId": record.activation_id,
        "start": record.start,
    }
    if record.end:
        out["end"] = record.end
    if not isinstance(record.duration, UnsetType):
        out["duration"] = record.duration
    out["version"] = record.version
    out["publish"] = record.publish
    out["response"] = rest_response(record.response)
    out["logs"] = record.logs
    out["annotations"] = record.annotations
    if isinstance(record.cause, str):
        out["cause"] = record.cause
    return out


def summary_json(record: Activation) -> dict[str, Any]:
    """The list view of a record: no logs, no result.

    As OpenWhisk's ``WhiskActivation.summaryAsJson``: ``end``, ``duration`` and the
    response's ``statusCode`` only for a record that has ended, so a trigger's record
    has none of them (``aio rt:activation:list`` shows it as a trigger). A pending record
    keeps its stored ``duration`` 0, so clients still list it as an action.
    """
    out: dict[str, Any] = {
        "namespace": record.namespace,
        "name": record.name,
        "version": record.version,
        "subject": record.subject,
        "activationId": record.activation_id,
        "start": record.start,
        "publish": record.publish,
        "annotations": record.annotations,
    }
    if isinstance(record.cause, str):
        out["cause"] = record.cause
    if record.end:
        out["end"] = record.end
        duration = record.duration
        out["duration"] = duration if isinstance(duration, int) else record.end - record.start
        if record.response.status_code is not None:
            out["statusCode"] = record.response.status_code
    elif isinstance(record.duration, int):
        out["duration"] = record.duration
    return out
