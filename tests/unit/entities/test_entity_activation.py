"""Activation records: outcomes as data, JSON shapes, log lines and messages."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from squall.entities.activation import (
    APPLICATION_ERROR,
    DEVELOPER_ERROR,
    SUCCESS,
    WHISK_ERROR,
    Activation,
    ActivationResponse,
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


def test_record_json_and_summary() -> None:
    record = Activation(
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
    record.cause = "b" * 32
    assert record.to_json()["cause"] == "b" * 32
    summary = summary_json(record.to_json())
    assert "logs" not in summary
    assert "response" not in summary
    assert summary["statusCode"] == 0
    assert summary["cause"] == "b" * 32
    assert summary["duration"] == 250


def test_rest_view_hides_the_status_code_and_leaves_the_stored_record_alone() -> None:
    # Given an ended action's stored record
    stored = Activation(
        "g", "n", "g", "c" * 32, 1000, 1250, ActivationResponse.developer_error("x")
    ).to_json()
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
    assert stored["response"]["statusCode"] == DEVELOPER_ERROR


def test_a_record_that_has_not_ended_has_no_end() -> None:
    # Given a trigger's record, stored as OpenWhisk stores it: end 0, no duration
    trigger = Activation("g", "t", "g", "d" * 32, 1000, 0, ActivationResponse.ok({})).to_json()
    assert trigger["end"] == 0 and "duration" not in trigger
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
    record = Activation("g", "n", "g", "c" * 32, 10, 5, ActivationResponse.ok({}))
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
