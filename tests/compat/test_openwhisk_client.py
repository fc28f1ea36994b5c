"""The official ``openwhisk`` npm client (pinned in package.json) against a live server.

Each Node script in this directory drives the client the way a user would and prints what
it observed as one JSON object; the assertions are here. ``./dev test`` runs
``npm install`` first. Without node or the installed client these tests skip locally and
fail in CI (``CI=true``).
"""

from __future__ import annotations

import re

import pytest
from _standalone import Standalone
from compatsupport import LOG_LINE, NOT_FOUND, assert_rejected, rejection, run_script

pytestmark = pytest.mark.compat


def test_actions_lifecycle(standalone: Standalone) -> None:
    # Given / When: the client creates, reads, lists, updates, invokes and deletes an action
    seen = run_script(standalone, "actions.js")
    name = seen["name"]

    # Then create answers the stored action, with the server-chosen kind and exec annotation
    created = seen["created"]
    assert created["name"] == name
    assert created["namespace"] == standalone.namespace
    assert created["version"] == "0.0.1"
    assert re.fullmatch(r"nodejs:\d+", created["exec"]["kind"])
    assert {"key": "exec", "value": created["exec"]["kind"]} in created["annotations"]
    # And a second create is rejected with 409 and OpenWhisk's text
    assert_rejected(seen["duplicate"], 409, "resource already exists")
    # And get returns the code, unless asked not to
    assert seen["got"]["exec"]["code"] == created["exec"]["code"]
    assert "code" not in seen["withoutCode"]["exec"]
    assert name in seen["listedNames"]
    # And invoke with result=true gives just the result, parameters passed through
    assert seen["v1Result"] == {"v": 1, "who": "the client"}
    # And update bumps the version and takes the new code and default parameters
    assert seen["updated"]["version"] == "0.0.2"
    assert {"key": "greeting", "value": "hi"} in seen["updated"]["parameters"]
    assert seen["v2Result"] == {"v": 2, "greeting": "hi"}
    # And a blocking invoke without result=true is the full record
    record = seen["v2Record"]
    assert re.fullmatch(r"[0-9a-f]{32}", record["activationId"])
    assert record["name"] == name
    assert record["version"] == "0.0.2"
    assert record["response"] == {
        "status": "success",
        "success": True,
        "result": {"v": 2, "greeting": "hi"},
        "size": len('{"v":2,"greeting":"hi"}'),
    }
    # And delete answers the deleted action; afterwards everything is 404
    assert seen["deleted"]["name"] == name
    assert seen["deleted"]["version"] == "0.0.2"
    for after in ("getAfterDelete", "invokeAfterDelete", "deleteAfterDelete"):
        assert_rejected(seen[after], 404, NOT_FOUND)


def test_invocations(standalone: Standalone) -> None:
    # Given / When: a non-blocking invoke, a Python action, and an action returning an error
    seen = run_script(standalone, "invoke.js")

    # Then the non-blocking invoke resolves to the id alone, and that record can be fetched
    activation_id = seen["accepted"]["activationId"]
    assert seen["accepted"] == {"activationId": activation_id}
    fetched = seen["fetched"]
    assert fetched["activationId"] == activation_id
    assert fetched["name"] == seen["slow"]
    assert fetched["response"]["result"] == {"done": 7}
    assert fetched["end"] >= fetched["start"] + 200
    # And the Python action answers with and without its argument
    assert seen["pyNamed"] == {"greeting": "Hello npm"}
    assert seen["pyDefault"] == {"greeting": "Hello stranger"}
    # And an application error is a rejection: 502, the action's error as the message,
    # and the full record as the error body
    failed = rejection(seen["failed"])
    assert failed["statusCode"] == 502
    assert failed["message"].endswith('--> "boom"')
    assert failed["error"]["response"]["status"] == "application error"
    assert failed["error"]["response"]["result"] == {"error": "boom"}


def test_activations(standalone: Standalone) -> None:
    # Given / When: two invokes of an action that logs, then the activations API
    seen = run_script(standalone, "activations.js")
    first, second = seen["ids"]

    # Then get returns the record, with both output lines stamped in OpenWhisk's format
    got = seen["got"]
    assert got["activationId"] == second
    assert got["response"]["result"] == {"n": 2}
    assert len(got["logs"]) == 2, got["logs"]
    assert re.fullmatch(rf"{LOG_LINE} stdout: line one", got["logs"][0])
    assert re.fullmatch(rf"{LOG_LINE} stderr: line two", got["logs"][1])
    # And logs and result are those parts of the record
    assert seen["logs"] == {"logs": got["logs"]}
    assert seen["result"] == got["response"]
    # And the list filtered by name has both, newest first, as summaries
    assert [a["activationId"] for a in seen["listed"]] == [second, first]
    assert all(a["name"] == seen["name"] for a in seen["listed"])
    assert all("response" not in a and "logs" not in a for a in seen["listed"])
    # And docs=true lists full records; count=true counts
    assert [a["response"]["result"] for a in seen["listedDocs"]] == [{"n": 2}, {"n": 1}]
    assert seen["counted"] == {"activations": 2}


def test_packages(standalone: Standalone) -> None:
    # Given / When: a package with a parameter and an action inside it, then deletes
    seen = run_script(standalone, "packages.js")
    pkg = seen["name"]

    # Then the package is created, and a second create is a 409
    assert seen["created"]["name"] == pkg
    assert seen["created"]["binding"] == {}
    assert {"key": "colour", "value": "blue"} in seen["created"]["parameters"]
    assert_rejected(seen["duplicate"], 409, "resource already exists")
    # And the action `pkg/inside` lives in namespace `guest/pkg`, and get lists it
    assert seen["actionCreated"]["namespace"] == f"{standalone.namespace}/{pkg}"
    assert seen["actionCreated"]["name"] == "inside"
    assert [a["name"] for a in seen["got"]["actions"]] == ["inside"]
    assert pkg in seen["listedNames"]
    # And invoking it merges the package's parameters under the invoke's
    assert seen["invoked"] == {"from": "client", "colour": "blue"}
    # And a package with contents cannot be deleted, but an empty one can
    assert_rejected(
        seen["deleteNonEmpty"],
        409,
        "Package not empty (contains 1 entities). Set force param or delete package contents.",
    )
    assert seen["actionDeleted"]["name"] == "inside"
    assert seen["deleted"]["name"] == pkg
    assert_rejected(seen["getAfterDelete"], 404, NOT_FOUND)


def test_authentication_errors(standalone: Standalone) -> None:
    # Given / When: a client with a wrong key, and one asking for another namespace
    seen = run_script(standalone, "auth.js")

    # Then they are rejected with 401 and 403 and OpenWhisk's messages
    assert_rejected(seen["wrongKey"], 401, "The supplied authentication is invalid.")
    assert_rejected(
        seen["otherNamespace"],
        403,
        "The supplied authentication is not authorized to access this resource.",
    )
    # And the right key lists the guest's namespace
    assert seen["ownNamespace"] == {"ok": [standalone.namespace]}


def test_seed_hello_js(standalone: Standalone) -> None:
    # Given the seed's hello.js created with the client
    # When it is invoked blocking, with and without result=true, and its logs are read
    observed = run_script(standalone, "seed_hello.js")
    # Then the result is {"hello": "world"}, in both answers
    assert observed["result"] == {"hello": "world"}
    assert observed["record"]["response"]["result"] == {"hello": "world"}
    # And the activation's logs hold the timestamped stdout line, in the record too
    line = re.compile(rf"^{LOG_LINE} stdout: Hello World$")
    assert [entry for entry in observed["logs"]["logs"] if line.match(entry)], observed["logs"]
    assert observed["record"]["logs"] == observed["logs"]["logs"]
