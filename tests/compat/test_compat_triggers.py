"""Triggers, rules and the alarms feed through the official ``openwhisk`` npm client.

The script is ``triggers.js``; the helpers (running a script against the session's
server, reading the client's rejections) are shared with ``test_openwhisk_client.py``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from _standalone import Standalone
from compatsupport import assert_rejected, rejection, run_script

pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def seen(standalone: Standalone) -> dict[str, Any]:
    """What ``triggers.js`` observed (run once for both tests)."""
    return run_script(standalone, "triggers.js")


def annotation(entity: dict[str, Any], key: str) -> Any:
    return next((a["value"] for a in entity["annotations"] if a["key"] == key), None)


def test_triggers_and_rules_through_the_client(
    standalone: Standalone, seen: dict[str, Any]
) -> None:
    # Given / When: the client creates a trigger, an action and a rule, fires, toggles
    ns = standalone.namespace
    trigger, action, rule = seen["trigger"], seen["action"], seen["rule"]

    # Then the trigger and the active rule come back in OpenWhisk's shape
    assert seen["triggerCreated"]["parameters"] == [{"key": "from", "value": "trigger"}]
    assert seen["ruleCreated"]["status"] == "active"
    assert seen["ruleCreated"]["trigger"] == {"name": trigger, "path": ns}
    assert seen["ruleCreated"]["action"] == {"name": action, "path": ns}

    # And triggers.invoke answers the trigger's activation id, whose record lists the rule
    record = seen["triggerRecord"]
    assert re.fullmatch(r"[0-9a-f]{32}", seen["fired"]["activationId"])
    assert record["activationId"] == seen["fired"]["activationId"]
    assert record["name"] == trigger
    assert record["response"]["result"] == {"n": 1}
    [line] = [json.loads(x) for x in record["logs"]]
    assert line == {
        "statusCode": 0,
        "success": True,
        "activationId": seen["actionRecord"]["activationId"],
        "rule": f"{ns}/{rule}",
        "action": f"{ns}/{action}",
    }
    # And the action ran with the trigger's parameters under the payload
    assert seen["actionRecord"]["response"]["result"] == {"from": "trigger", "n": 1}
    assert seen["actionRecord"]["cause"] == record["activationId"]

    # And disable / enable answer OpenWhisk's plain-text "OK", which the client resolves
    # to, and show in rules.get; a fire with the rule disabled answers nothing (204)
    assert seen["disabled"] == "OK" and seen["enabled"] == "OK", seen
    assert seen["gotDisabled"]["status"] == "inactive"
    assert seen["firedInactive"] is True
    assert seen["gotEnabled"]["status"] == "active"

    # And a rule to a missing action is refused with OpenWhisk's message
    missing = rejection(seen["missingAction"])["error"]["error"]
    assert_rejected(seen["missingAction"], 400, missing)
    assert re.fullmatch(rf"action /{ns}/compat-none-\w+ does not exist", missing)

    # And deleting the rule detaches it: the trigger has no rules and fires to nothing
    assert seen["ruleDeleted"]["name"] == rule
    assert not seen["triggerAfter"].get("rules")
    assert seen["firedWithoutRules"] is True
    assert seen["triggerDeleted"]["name"] == trigger


def test_alarm_interval_feed_through_the_client(
    standalone: Standalone, seen: dict[str, Any]
) -> None:
    # Given / When: the client creates a trigger with the interval feed, reads, updates
    # and deletes the feed
    ns = standalone.namespace
    # feeds.create is a blocking invoke of the feed action: its full, successful record
    created = seen["feedCreated"]
    assert created["name"] == "interval"
    assert created["response"]["result"] == {"status": "success"}
    assert annotation(created, "path") == "whisk.system/alarms/interval"
    # feeds.get reads the alarm back
    read = seen["feedRead"]["response"]["result"]
    assert read["config"]["name"] == seen["feedTrigger"]
    assert read["config"]["namespace"] == ns
    assert read["config"]["payload"] == {"beat": 1}
    assert read["config"]["minutes"] == 1
    assert read["status"]["active"] is True
    # A refused update rejects with the feed's message (a 502, as for any failed action)
    assert_rejected_feed(seen["feedBadUpdate"], "the minutes parameter must be an integer")
    # feeds.delete removes it; reading it afterwards fails
    assert seen["feedDeleted"]["response"]["result"] == {"status": "success"}
    assert_rejected_feed(
        seen["feedReadAfterDelete"],
        f"could not find trigger /{ns}/{seen['feedTrigger']} in the database",
    )


def assert_rejected_feed(observed: dict[str, Any], message: str) -> None:
    """A failed feed action: the client rejects with 502, the message is the action's
    ``error``, and the error body is the feed action's record."""
    failed = rejection(observed)
    assert failed["statusCode"] == 502, failed
    assert message in failed["message"]
    assert failed["error"]["response"]["result"] == {"error": message}
