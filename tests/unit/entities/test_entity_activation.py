"""Activation records: outcomes as data, JSON shapes, log lines and messages."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import pytest

from squall.entities.activation import (
    APPLICATION_ERROR,
    DEVELOPER_ERROR,
    SUCCESS,
    WHISK_ERROR,
    Activation,
    ActivationResponse,
    cause_field,
    decode,
    encode,
    ended,
    final_record,
    format_log_line,
    new_activation_id,
    pending_record,
    rest_json,
    summary_json,
    timed_out_message,
    truncated_logs_message,
    truncated_response_message,
)

NEW_YEAR_NS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000


def test_log_line_format() -> None:
    # OpenWhisk: "2024-01-01T00:00:00.123456789Z stdout: message"
    line = format_log_line(NEW_YEAR_NS + 123_456_789, "stdout", "message")
    assert line == "2024-01-01T00:00:00.123456789Z stdout: message"
    assert (
        format_log_line(NEW_YEAR_NS + 5, "stderr", "") == "2024-01-01T00:00:00.000000005Z stderr: "
    )
    late = format_log_line(NEW_YEAR_NS + 59 * 1_000_000_000 + 999_999_999, "stdout", "x")
    assert late == "2024-01-01T00:00:59.999999999Z stdout: x"


def test_activation_ids_are_32_lowercase_hex() -> None:
    ids = {new_activation_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    # random UUIDs (version 4, RFC 4122 variant), as OpenWhisk's are
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)


@pytest.mark.parametrize(
    ("response", "status", "code", "success", "result"),
    [
        (ActivationResponse.ok({"a": 1}), "success", SUCCESS, True, {"a": 1}),
        (ActivationResponse.ok([1, 2]), "success", SUCCESS, True, [1, 2]),
        (
            ActivationResponse.ok({"error": "bad"}),
            "application error",
            APPLICATION_ERROR,
            False,
            {"error": "bad"},
        ),
        (
            ActivationResponse.developer_error("crashed"),
            "action developer error",
            DEVELOPER_ERROR,
            False,
            {"error": "crashed"},
        ),
        (
            ActivationResponse.developer_error({"error": "as is"}),
            "action developer error",
            DEVELOPER_ERROR,
            False,
            {"error": "as is"},
        ),
        (
            ActivationResponse.whisk_error("no container"),
            "whisk internal error",
            WHISK_ERROR,
            False,
            {"error": "no container"},
        ),
    ],
)
def test_the_four_outcomes(
    response: ActivationResponse, status: str, code: int, success: bool, result: object
) -> None:
    assert response.to_json() == {
        "status": status,
        "statusCode": code,
        "success": success,
        "result": result,
    }


def _record(activation_id: str, start: int, end: int, response: ActivationResponse) -> Activation:
    if not end:  # a trigger's: no duration
        return Activation(
            namespace="g",
            name="n",
            subject="g",
            activation_id=activation_id,
            start=start,
            response=response,
        )
    return final_record(
        namespace="g",
        name="n",
        subject="g",
        activation_id=activation_id,
        start=start,
        end=end,
        response=response,
    )


def test_record_json_and_summary() -> None:
    record = final_record(
        namespace="guest",
        name="hello",
        subject="guest",
        activation_id="a" * 32,
        start=1000,
        end=1250,
        response=ActivationResponse.ok({"r": 1}),
        logs=["2024-01-01T00:00:00.000000000Z stdout: hi"],
        annotations=[{"key": "path", "value": "guest/hello"}],
    )
    body = record.to_json()
    assert body["duration"] == 250
    assert body["activationId"] == "a" * 32
    assert body["version"] == "0.0.1"
    assert body["response"]["result"] == {"r": 1}
    assert "cause" not in body
    record = msgspec.structs.replace(record, cause="b" * 32)
    assert record.to_json()["cause"] == "b" * 32
    summary = summary_json(record)
    assert "logs" not in summary
    assert "response" not in summary
    assert summary["statusCode"] == 0
    assert summary["cause"] == "b" * 32
    assert summary["duration"] == 250


def test_rest_view_hides_the_status_code_and_leaves_the_stored_record_alone() -> None:
    # Given an ended action's stored record
    stored = _record("c" * 32, 1000, 1250, ActivationResponse.developer_error("x"))
    # When it is shown as the REST API shows it
    shown = rest_json(stored)
    # Then its response is OpenWhisk's {status, success, result}, end and duration stay
    assert shown["response"] == {
        "status": "action developer error",
        "success": False,
        "result": {"error": "x"},
    }
    assert shown["end"] == 1250 and shown["duration"] == 250
    # And the stored record still has the code the controller reads
    assert stored.to_json()["response"]["statusCode"] == DEVELOPER_ERROR
    assert stored.response.status_code == DEVELOPER_ERROR


def test_a_record_that_has_not_ended_has_no_end() -> None:
    # Given a trigger's record, stored as OpenWhisk stores it: end 0, no duration
    trigger = _record("d" * 32, 1000, 0, ActivationResponse.ok({}))
    assert trigger.to_json()["end"] == 0 and "duration" not in trigger.to_json()
    # When shown and listed / Then no end, duration or statusCode anywhere
    assert not {"end", "duration"} & set(rest_json(trigger))
    assert not {"end", "duration", "statusCode"} & set(summary_json(trigger))
    # And a pending record keeps its duration 0 (aio lists it as an action), but no end
    pending = pending_record(
        namespace="g",
        subject="g",
        activation_id="e" * 32,
        name="a",
        path="g/a",
        version="0.0.1",
        accepted_ms=1000,
    )
    assert "end" not in rest_json(pending) and rest_json(pending)["duration"] == 0
    listed = summary_json(pending)
    assert listed["duration"] == 0 and "end" not in listed and "statusCode" not in listed


def test_duration_is_never_negative() -> None:
    record = _record("c" * 32, 10, 5, ActivationResponse.ok({}))
    assert record.duration == 0


def test_messages_use_openwhisks_wording() -> None:
    assert timed_out_message(100, init=False) == (
        "The action exceeded its time limits of 100 milliseconds."
    )
    assert timed_out_message(100, init=True) == (
        "The action exceeded its time limits of 100 milliseconds during initialization."
    )
    assert truncated_logs_message(1024) == (
        "Logs were truncated because the total bytes size exceeds the limit of 1024 bytes."
    )
    assert truncated_response_message(20, 10, "0123456789") == (
        "The action produced a response that exceeded the allowed length: 20 > 10 bytes. "
        "The truncated response was: 0123456789"
    )


# A record as Squall stored it before records were typed (orjson of a dict), in every
# shape it took: a final one, a pending one, a trigger's; plus a key it never wrote.
STORED_BEFORE = [
    {
        "namespace": "guest",
        "name": "hello",
        "subject": "guest",
        "activationId": "a" * 32,
        "start": 1000,
        "end": 1250,
        "version": "0.0.2",
        "publish": False,
        "response": {
            "status": "application error",
            "statusCode": 1,
            "success": False,
            "result": {"error": "no", "n": [1.5, None, True], "nul": "a\u0000b"},
            "size": 42,
        },
        "logs": ["2024-01-01T00:00:00.000000000Z stdout: hi"],
        "annotations": [{"key": "path", "value": "guest/p/hello"}, {"key": "waitTime", "value": 3}],
        "duration": 250,
        "cause": "b" * 32,
    },
    pending_record(
        namespace="g",
        subject="g",
        activation_id="e" * 32,
        name="a",
        path="g/a",
        version="0.0.1",
        accepted_ms=1000,
    ).to_json(),
    {
        "namespace": "g",
        "name": "t",
        "subject": "g",
        "activationId": "d" * 32,
        "start": 1000,
        "end": 0,
        "version": "0.0.1",
        "publish": False,
        "response": {"status": "success", "statusCode": 0, "success": True, "result": {}},
        "logs": ['{"statusCode":0,"success":true}'],
        "annotations": [],
    },
]


@pytest.mark.parametrize("stored", STORED_BEFORE)
def test_records_stored_before_decode_and_encode_to_the_same_json(stored: dict[str, Any]) -> None:
    # Given the JSON text of a record stored by an older Squall
    text = orjson.dumps(stored)
    # When it is decoded into a typed record and encoded again
    record = decode(text)
    again = encode(record)
    # Then nothing is lost or added: the same JSON object (existing stores still read)
    assert orjson.loads(again) == stored
    assert decode(again) == record
    # And an unknown key (a newer writer's) is ignored, not an error
    assert decode(orjson.dumps({**stored, "newKey": 1})) == record


def test_the_response_reads_as_typed_fields() -> None:
    record = decode(orjson.dumps(STORED_BEFORE[0]))
    assert record.response.code == APPLICATION_ERROR and not record.response.success
    assert record.response.size == 42 and record.caused_by_id == "b" * 32
    assert record.annotation("waitTime") == 3 and record.annotation("missing") is None
    pending = decode(orjson.dumps(STORED_BEFORE[1]))
    # A pending record has no code: it reads as a whisk error until it ends
    assert pending.pending and pending.response.status_code is None
    assert pending.response.code == WHISK_ERROR
    final = ended(pending, ActivationResponse.ok({"x": 1}), end=1300)
    assert not final.pending and final.end == 1300 and final.duration == 0
    assert pending.pending  # the pending record itself is unchanged


def test_no_cause_is_no_key() -> None:
    record = _record("c" * 32, 10, 20, ActivationResponse.ok({}))
    assert "cause" not in record.to_json()
    for none in (None, ""):
        assert "cause" not in msgspec.structs.replace(record, cause=cause_field(none)).to_json()


def test_something_else_is_not_a_record() -> None:
    with pytest.raises(ValueError):
        decode(b'{"namespace": "g"}')
    with pytest.raises(ValueError):
        decode(b"[]")
