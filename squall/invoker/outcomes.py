"""Reading a runtime's answers as OpenWhisk activation outcomes.

The runtime speaks HTTP; these functions decide which of the four statuses an answer is
and with which message (OpenWhisk's wording), so the rest of the invoker never parses
runtime bodies itself.
"""

from __future__ import annotations

from typing import Any

import orjson

from squall.entities.activation import (
    ABNORMAL_INIT,
    ABNORMAL_RUN,
    APPLICATION_ERROR,
    INVALID_JSON,
    MEMORY_EXHAUSTED,
    ActivationResponse,
    timed_out_message,
    truncated_response_message,
)
from squall.sandbox.contracts import RuntimeResponse

MAX_RESULT_BYTES = 1024 * 1024
_TRUNK_CHARS = 1024


def answer_size(body: bytes) -> int:
    """OpenWhisk's ``size`` of a runtime's answer: the length of the body as a Java string,
    i.e. in UTF-16 code units (a character outside the BMP counts twice)."""
    return len(body.decode(errors="replace").encode("utf-16-le")) // 2


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def init_outcome(resp: RuntimeResponse, timeout_ms: int) -> ActivationResponse | None:
    """None when /init succeeded, else the developer error that ends the activation."""
    if resp.timed_out:
        return ActivationResponse.developer_error(timed_out_message(timeout_ms, init=True))
    if resp.oom:
        return ActivationResponse.developer_error(MEMORY_EXHAUSTED)
    if resp.exited:
        return ActivationResponse.developer_error(ABNORMAL_INIT)
    if resp.status == 200:
        return None
    size = answer_size(resp.body)
    parsed = _json(resp.body)
    if isinstance(parsed, dict) and "error" in parsed:
        return ActivationResponse.developer_error(parsed, size)
    text = resp.body.decode(errors="replace").strip()
    message = "The action failed during initialization" + (f": {text}" if text else ".")
    return ActivationResponse.developer_error(message, size)


def run_outcome(resp: RuntimeResponse, timeout_ms: int) -> ActivationResponse:
    if resp.timed_out:
        return ActivationResponse.developer_error(timed_out_message(timeout_ms, init=False))
    if resp.oom:
        return ActivationResponse.developer_error(MEMORY_EXHAUSTED)
    if resp.exited:
        return ActivationResponse.developer_error(ABNORMAL_RUN)
    if resp.truncated or len(resp.body) > MAX_RESULT_BYTES:
        # As in OpenWhisk: an application error, sized by the whole answer in bytes.
        size = max(resp.full_size, len(resp.body))
        trunk = resp.body[:_TRUNK_CHARS].decode(errors="replace")
        return ActivationResponse.of(
            APPLICATION_ERROR,
            {"error": truncated_response_message(size, MAX_RESULT_BYTES, trunk)},
            size,
        )
    size = answer_size(resp.body)
    parsed = _json(resp.body)
    if resp.status == 200:
        if isinstance(parsed, dict | list):
            return ActivationResponse.ok(parsed, size)
        return ActivationResponse.developer_error(INVALID_JSON, size)
    if isinstance(parsed, dict) and "error" in parsed:
        return ActivationResponse.developer_error(parsed, size)
    return ActivationResponse.developer_error(INVALID_JSON, size)
