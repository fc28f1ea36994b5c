"""The standard catalog through the official ``openwhisk`` npm client: the three uses of
``/whisk.system/utils`` in the client's own integration tests (invoke ``sort`` by its full
name, a sequence of ``echo``, a rule bound to ``echo``), and listing ``/whisk.system``.

The script is ``catalog.js``; the helpers are shared with ``test_openwhisk_client.py``.
"""

from __future__ import annotations

import json

import pytest
from _standalone import Standalone
from compatsupport import run_script

pytestmark = pytest.mark.compat

ECHO = "/whisk.system/utils/echo"


def test_whisk_system_utils_through_the_client(standalone: Standalone) -> None:
    # Given / When: the client uses /whisk.system/utils as its integration tests do
    seen = run_script(standalone, "catalog.js")
    ns = standalone.namespace

    # Then sort, invoked by its fully qualified name, succeeds with the sorted lines
    sorted_ = seen["sorted"]
    assert sorted_["response"]["success"] is True
    assert sorted_["response"]["result"] == {"lines": [2, 3, 4], "length": 3}
    assert sorted_["namespace"] == ns

    # And a sequence of echo is created in the caller's namespace, and echoes
    for created in (seen["seqCreated"], seen["seqGot"]):
        assert created["name"] == seen["seq"]
        assert created["namespace"] == ns
        assert created["exec"]["kind"] == "sequence"
        assert created["exec"]["components"] == [ECHO]
    assert seen["seqResult"] == {"hello": "world"}

    # And a rule bound to echo is created and runs echo when its trigger fires
    assert seen["ruleCreated"]["action"] == {"name": "echo", "path": "whisk.system/utils"}
    assert seen["ruleCreated"]["status"] == "active"
    [line] = [json.loads(x) for x in seen["triggerRecord"]["logs"]]
    assert line["success"] is True
    assert line["action"] == ECHO.lstrip("/")
    assert line["rule"] == f"{ns}/{seen['rule']}"
    echo = seen["echoRecord"]
    assert echo["name"] == "echo" and echo["namespace"] == ns
    assert echo["response"]["result"] == {"fired": True}

    # And /whisk.system lists utils, samples and alarms; utils holds the nine actions
    listed = {p["name"] for p in seen["systemPackages"]}
    assert {"utils", "samples", "alarms"} <= listed
    assert {a["name"] for a in seen["utils"]["actions"]} == {
        "echo", "cat", "sort", "split", "head", "date", "namespace", "smash", "hosturl"
    }  # fmt: skip
