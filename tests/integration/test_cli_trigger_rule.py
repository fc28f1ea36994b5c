"""``squall trigger`` and ``squall rule`` as a user runs them against the standalone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _cli_client import HELLO_JS, Wsk, write
from _standalone import Standalone, poll

from squall.cli.client import exits

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


@pytest.fixture
def wsk(standalone: Standalone, tmp_path: Path) -> Wsk:
    return Wsk.for_server(standalone, tmp_path)


def test_a_fired_trigger_runs_the_rule_s_action(wsk: Wsk, unique: Callable[[str], str]) -> None:
    # Given an action, a trigger with a parameter and a rule between them
    action, trigger, rule = unique("greet"), unique("t"), unique("r")
    wsk.run("action", "create", action, str(write(wsk.home, "hello.js", HELLO_JS)))
    assert wsk.run("trigger", "create", trigger, "-p", "name", "T").out == (
        f"ok: created trigger {trigger}\n"
    )
    assert wsk.run("rule", "create", rule, trigger, action).out == f"ok: created rule {rule}\n"
    assert wsk.run("rule", "status", rule).out == f"ok: rule {rule} is active\n"

    # When the trigger fires
    fired = wsk.run("trigger", "fire", trigger)

    # Then wsk's line names its activation, whose log names the rule's action activation
    assert fired.out.startswith(f"ok: triggered /_/{trigger} with id ")
    trigger_activation = fired.out.split()[-1]
    logs = wsk.run("activation", "logs", trigger_activation).out.splitlines()
    entry = json.loads(logs[0])
    assert entry["rule"] == f"guest/{rule}" and entry["success"] is True

    def action_result() -> Any:
        done = wsk.run("activation", "result", entry["activationId"], rc=None)
        return json.loads(done.out) if done.rc == 0 else None

    assert poll(action_result, DEADLINE_S, 0.2, "the rule's activation") == {"greeting": "Hello T"}
    # And activation list shows the fire as a trigger's: a success with no duration
    listed = wsk.run("activation", "list", trigger).out.splitlines()
    row = next(line for line in listed if trigger_activation in line).split()
    assert row[3:7] == ["trigger", "--", "--", "success"], row

    # When the rule is disabled, firing makes no activation
    assert wsk.run("rule", "disable", rule).out == f"ok: disabled rule {rule}\n"
    assert "no active rules" in wsk.run("trigger", "fire", trigger).out
    assert wsk.run("rule", "enable", rule).out == f"ok: enabled rule {rule}\n"

    # Lists and gets
    rules = wsk.run("rule", "list", "--limit", "200").out.splitlines()
    assert rules[0] == "rules"
    assert f"/guest/{rule} private active".split() in [line.split() for line in rules]
    triggers = wsk.json("trigger", "list", "--limit", "200")
    assert trigger in [t["name"] for t in triggers]
    got = wsk.json("trigger", "get", trigger)
    assert got["parameters"] == [{"key": "name", "value": "T"}]
    assert wsk.json("rule", "get", rule)["action"]["name"] == action

    # Deletes
    assert wsk.run("rule", "delete", rule, "--disable").out == f"ok: deleted rule {rule}\n"
    assert wsk.run("trigger", "delete", trigger).out == f"ok: deleted trigger {trigger}\n"
    wsk.run("rule", "get", rule, rc=exits.NOT_FOUND)


def test_a_feed_is_told_of_its_trigger(wsk: Wsk, unique: Callable[[str], str]) -> None:
    trigger = unique("tick")
    feed = "/whisk.system/alarms/interval"

    created = wsk.run("trigger", "create", trigger, "--feed", feed, "-p", "minutes", "60")

    lines = created.out.splitlines()
    assert lines[0].startswith(f"ok: invoked {feed} with id ")
    assert lines[1] == f"ok: created trigger {trigger}"
    annotations = wsk.json("trigger", "get", trigger)["annotations"]
    assert {"key": "feed", "value": feed} in annotations

    deleted = wsk.run("trigger", "delete", trigger).out.splitlines()
    assert deleted[0].startswith(f"ok: invoked {feed} with id ")
    assert deleted[1] == f"ok: deleted trigger {trigger}"


def test_a_refused_feed_leaves_no_trigger(wsk: Wsk, unique: Callable[[str], str]) -> None:
    trigger = unique("tick")

    refused = wsk.run(
        "trigger", "create", trigger, "--feed", "/whisk.system/alarms/interval",
        rc=exits.APP_ERROR,
    )  # fmt: skip

    assert "interval trigger feed is missing the minutes parameter" in refused.err
    wsk.run("trigger", "get", trigger, rc=exits.NOT_FOUND)


def test_a_rule_needs_its_trigger(wsk: Wsk, unique: Callable[[str], str]) -> None:
    action = unique("a")
    wsk.run("action", "create", action, str(write(wsk.home, "hello.js", HELLO_JS)))

    missing = wsk.run("rule", "create", unique("r"), unique("nope"), action, rc=None)

    assert missing.rc in (exits.BAD_REQUEST, exits.NOT_FOUND), missing
    assert missing.err.startswith("error: Unable to create rule ")
