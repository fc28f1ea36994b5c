"""A runtime's answers read as OpenWhisk's four activation outcomes, with its messages."""

from __future__ import annotations

import orjson

from squall.entities.activation import APPLICATION_ERROR, DEVELOPER_ERROR, SUCCESS
from squall.invoker.outcomes import MAX_RESULT_BYTES, init_outcome, run_outcome
from squall.sandbox.contracts import RuntimeResponse


def _ok(body: object, status: int = 200) -> RuntimeResponse:
    return RuntimeResponse(status, orjson.dumps(body))


def test_successful_init_has_no_outcome() -> None:
    assert init_outcome(_ok({"ok": True}), 1000) is None


def test_init_timeout_says_during_initialization() -> None:
    outcome = init_outcome(RuntimeResponse(0, b"", timed_out=True), 250)
    assert outcome is not None and outcome.status_code == DEVELOPER_ERROR
    assert outcome.result == {
        "error": "The action exceeded its time limits of 250 milliseconds during initialization."
    }


def test_init_crash_and_init_error() -> None:
    crashed = init_outcome(RuntimeResponse(0, b"", exited=True), 1000)
    assert crashed is not None
    assert crashed.result == {"error": "The action did not initialize and exited unexpectedly."}
    # Given the runtime's own error object / Then it is the result as it is
    failed = init_outcome(_ok({"error": "SyntaxError: x"}, 502), 1000)
    assert failed is not None and failed.result == {"error": "SyntaxError: x"}
    # Given a non-JSON failure / Then OpenWhisk's init message carries it
    odd = init_outcome(RuntimeResponse(500, b"boom"), 1000)
    assert odd is not None
    assert odd.result == {"error": "The action failed during initialization: boom"}


def test_run_success_and_application_error() -> None:
    ok = run_outcome(_ok({"hello": "world"}), 1000)
    assert (ok.status_code, ok.result) == (SUCCESS, {"hello": "world"})
    arr = run_outcome(_ok([1, 2]), 1000)
    assert (arr.status_code, arr.result) == (SUCCESS, [1, 2])
    app = run_outcome(_ok({"error": "nope"}), 1000)
    assert (app.status_code, app.result) == (APPLICATION_ERROR, {"error": "nope"})


def test_run_developer_errors() -> None:
    timeout = run_outcome(RuntimeResponse(0, b"", timed_out=True), 300)
    assert timeout.status_code == DEVELOPER_ERROR
    assert timeout.result == {"error": "The action exceeded its time limits of 300 milliseconds."}
    exited = run_outcome(RuntimeResponse(0, b"", exited=True), 300)
    assert exited.result == {
        "error": "The action did not produce a valid response and exited unexpectedly."
    }
    not_json = run_outcome(RuntimeResponse(200, b"hello"), 300)
    assert not_json.result == {
        "error": "The action did not produce a valid JSON or JSON Array response."
    }
    scalar = run_outcome(RuntimeResponse(200, b"42"), 300)
    assert scalar.status_code == DEVELOPER_ERROR
    thrown = run_outcome(_ok({"error": "An error has occurred: Error: x"}, 502), 300)
    assert (thrown.status_code, thrown.result) == (
        DEVELOPER_ERROR,
        {"error": "An error has occurred: Error: x"},
    )


def test_oversize_result_is_truncated_with_openwhisk_message() -> None:
    # Given an answer the sandbox had to cut at its limit
    body = b'{"big":"' + b"x" * 2000
    outcome = run_outcome(
        RuntimeResponse(200, body, truncated=True, full_size=2 * MAX_RESULT_BYTES), 1000
    )
    # Then the result names both sizes and starts the truncated response
    assert outcome.status_code == APPLICATION_ERROR
    message = outcome.result["error"]
    assert message.startswith(
        "The action produced a response that exceeded the allowed length: "
        f"{2 * MAX_RESULT_BYTES} > {MAX_RESULT_BYTES} bytes. The truncated response was: "
        '{"big":"xxx'
    )


def test_an_out_of_memory_kill_is_openwhisks_memory_message() -> None:
    # Given a runtime the kernel killed at its memory limit, during /init or /run
    killed = RuntimeResponse(0, b"", exited=True, oom=True)
    # Then both are developer errors with OpenWhisk's memory message
    message = {"error": "The action exhausted its memory and was aborted."}
    init = init_outcome(killed, 1000)
    assert init is not None and (init.status_code, init.result) == (DEVELOPER_ERROR, message)
    run = run_outcome(killed, 1000)
    assert (run.status_code, run.result) == (DEVELOPER_ERROR, message)


def test_size_is_the_length_of_an_answer_the_runtime_gave() -> None:
    # Given answers the runtime gave over HTTP / Then size is their length as OpenWhisk
    # counts it (Java string length: UTF-16 code units, so an emoji counts twice)
    assert run_outcome(RuntimeResponse(200, b'{"a":"b"}'), 1000).size == 9
    assert run_outcome(RuntimeResponse(200, '{"a":"é😀"}'.encode()), 1000).size == 11
    assert run_outcome(RuntimeResponse(200, b"hello"), 1000).size == 5
    assert run_outcome(_ok({"error": "x"}, 502), 1000).size == len('{"error":"x"}')
    failed = init_outcome(RuntimeResponse(500, b"boom"), 1000)
    assert failed is not None and failed.size == 4
    # And a cut answer is sized by its whole length in bytes
    cut = RuntimeResponse(200, b"{", truncated=True, full_size=2 * MAX_RESULT_BYTES)
    assert run_outcome(cut, 1000).size == 2 * MAX_RESULT_BYTES
    # And when there was no answer there is no size, in the record either
    for silent in (
        RuntimeResponse(0, b"", timed_out=True),
        RuntimeResponse(0, b"", exited=True),
        RuntimeResponse(0, b"", exited=True, oom=True),
    ):
        outcome = run_outcome(silent, 1000)
        assert outcome.size is None and "size" not in outcome.to_json()
    assert run_outcome(_ok({"a": 1}), 1000).to_json()["size"] == len('{"a":1}')
