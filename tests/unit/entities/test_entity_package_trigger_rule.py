"""Packages, triggers and rules: creation, updates and their OpenWhisk JSON shapes."""

from __future__ import annotations

from typing import Any

import pytest

from squall.entities import params
from squall.entities.names import MALFORMED_FQN, EntityPath
from squall.entities.package import Binding, Package
from squall.entities.rule import ACTIVE, INACTIVE, Rule, ref_json
from squall.entities.trigger import Trigger
from squall.errors import BadRequest

PKG = EntityPath("guest", "", "pkg")
TRIGGER = EntityPath("guest", "", "t")
RULE = EntityPath("guest", "", "r")


# -- packages ---------------------------------------------------------------------------


def test_plain_package_json() -> None:
    package = Package.create(PKG, {"parameters": [{"key": "p", "value": 1}]})
    assert package.binding is None
    body = package.to_json()
    assert body == {
        "namespace": "guest",
        "name": "pkg",
        "version": "0.0.1",
        "publish": False,
        "binding": {},
        "parameters": [{"key": "p", "value": 1}],
        "annotations": [],
        "updated": 0,
    }
    summary = package.summary_json()
    assert summary["binding"] is False
    assert "parameters" not in summary


@pytest.mark.parametrize(
    ("raw", "binding"),
    [
        ({"namespace": "guest", "name": "src"}, Binding("guest", "src")),
        ({"namespace": "_", "name": "src"}, Binding("guest", "src")),
        ({"name": "src"}, Binding("guest", "src")),
        ({"namespace": "other", "name": "src"}, Binding("other", "src")),
    ],
)
def test_binding_parse(raw: dict[str, Any], binding: Binding) -> None:
    package = Package.create(PKG, {"binding": raw})
    assert package.binding == binding
    assert package.to_json()["binding"] == binding.to_json()
    assert package.summary_json()["binding"] == binding.to_json()


@pytest.mark.parametrize(
    "raw", [{"namespace": "guest"}, "guest/src", {"name": 3}, {"name": "bad$"}]
)
def test_malformed_binding(raw: Any) -> None:
    with pytest.raises(BadRequest):
        Package.create(PKG, {"binding": raw})


def test_package_update() -> None:
    package = Package.create(
        PKG,
        {
            "binding": {"name": "src"},
            "parameters": [{"key": "p", "value": 1}],
            "annotations": [{"key": "a", "value": 1}],
        },
    )
    updated = package.update({"annotations": [{"key": "b", "value": 2}]})
    assert updated.version == "0.0.2"
    assert updated.binding == Binding("guest", "src")
    assert updated.parameters == [{"key": "p", "value": 1}]
    assert params.as_dict(updated.annotations) == {"a": 1, "b": 2}
    assert updated.update({"binding": {}}).binding is None


def test_package_store_round_trip() -> None:
    package = Package.create(PKG, {"binding": {"name": "src"}, "publish": True})
    back = Package.from_store(PKG, package.to_store(), "2-x", 99)
    assert back.to_json() == {**package.to_json(), "updated": 99}
    plain = Package.create(PKG, {})
    assert Package.from_store(PKG, plain.to_store(), "1-x", 1).binding is None


# -- triggers ---------------------------------------------------------------------------


def test_trigger_json_and_rules() -> None:
    trigger = Trigger.create(TRIGGER, {"parameters": [{"key": "p", "value": "v"}]})
    body = trigger.to_json()
    assert body["limits"] == {}
    assert body["parameters"] == [{"key": "p", "value": "v"}]
    assert body["version"] == "0.0.1"
    assert "rules" not in body
    # When a rule is attached / Then the trigger's rules map names it "ns/rule"
    entry = {"action": {"name": "a", "path": "guest"}, "status": ACTIVE}
    attached = trigger.with_rule("guest/r", entry)
    assert attached.to_json()["rules"] == {"guest/r": entry}
    assert trigger.rules == {}  # the original is unchanged
    # When it is detached / Then the map no longer has it
    assert attached.with_rule("guest/r", None).rules == {}
    assert "rules" not in trigger.summary_json()


def test_trigger_update_and_store() -> None:
    trigger = Trigger.create(
        TRIGGER, {"annotations": [{"key": "feed", "value": "/whisk.system/alarms/alarm"}]}
    )
    trigger = trigger.with_rule(
        "guest/r", {"action": {"name": "a", "path": "guest"}, "status": "active"}
    )
    updated = trigger.update({"parameters": [{"key": "x", "value": 1}]})
    assert updated.version == "0.0.2"
    assert updated.parameters == [{"key": "x", "value": 1}]
    assert params.get(updated.annotations, "feed") == "/whisk.system/alarms/alarm"
    assert updated.rules == trigger.rules
    stored = updated.to_store()
    assert stored["rules"] == trigger.rules
    back = Trigger.from_store(TRIGGER, stored, "3-x", 5)
    assert back.rules == trigger.rules
    assert back.to_json() == {**updated.to_json(), "updated": 5}


# -- rules ------------------------------------------------------------------------------


def test_rule_create_and_json() -> None:
    rule = Rule.create(RULE, {"trigger": "/_/t", "action": "/guest/pkg/a"})
    assert rule.trigger == EntityPath("guest", "", "t")
    assert rule.action == EntityPath("guest", "pkg", "a")
    assert rule.status == ACTIVE
    assert rule.key == "guest/r"
    body = rule.to_json()
    assert body["trigger"] == {"name": "t", "path": "guest"}
    assert body["action"] == {"name": "a", "path": "guest/pkg"}
    assert body["status"] == "active"
    assert body["version"] == "0.0.1"
    assert rule.trigger_entry() == {
        "action": {"name": "a", "path": "guest/pkg"},
        "status": "active",
    }
    assert ref_json(EntityPath("ns", "", "x")) == {"name": "x", "path": "ns"}


def test_rule_relative_references() -> None:
    rule = Rule.create(RULE, {"trigger": "t", "action": "pkg/a"})
    assert rule.trigger.fqn == "/guest/t"
    assert rule.action.fqn == "/guest/pkg/a"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"trigger": "/_/t"},
            "The request content was malformed:\n'trigger' and 'action' must be defined.",
        ),
        (
            {"action": "/_/a"},
            "The request content was malformed:\n'trigger' and 'action' must be defined.",
        ),
        (
            {"trigger": 1, "action": "/_/a"},
            "The request content was malformed:\n'trigger' must be a string.",
        ),
        (
            {"trigger": "/_/t", "action": ""},
            "The request content was malformed:\n'action' must be a string.",
        ),
        ({"trigger": "/_", "action": "/_/a"}, MALFORMED_FQN),
    ],
)
def test_malformed_rule(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as e:
        Rule.create(RULE, body)
    assert e.value.message == message


def test_rule_update_and_store() -> None:
    rule = Rule.create(RULE, {"trigger": "/_/t", "action": "/_/a"})
    updated = rule.update({"action": "/_/b"})
    assert updated.version == "0.0.2"
    assert updated.trigger == rule.trigger
    assert updated.action == EntityPath("guest", "", "b")
    stored = updated.to_store()
    assert stored["trigger"] == "/guest/t"
    assert stored["action"] == "/guest/b"
    back = Rule.from_store(RULE, {**stored, "status": INACTIVE}, "1-x", 7)
    assert back.action == updated.action
    assert back.status == INACTIVE
    assert back.to_json()["updated"] == 7
