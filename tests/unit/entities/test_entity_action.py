"""Actions: creating from a PUT body, updating (merge + version bump), JSON shapes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from squall.entities import activation, params
from squall.entities.action import Action, pending_invocation
from squall.entities.activation import pending_record
from squall.entities.kinds import CodeExec
from squall.entities.limits import ActionLimits
from squall.entities.names import EntityPath
from squall.errors import BadRequest

PATH = EntityPath("guest", "", "hello")
IN_PKG = EntityPath("guest", "pkg", "hello")
NODE = {"kind": "nodejs:default", "code": "function main() { return {}; }"}


def create(**body: Any) -> Action:
    return Action.create(PATH, {"exec": NODE, **body})


def test_create_defaults_and_exec_annotation() -> None:
    # When an action is created from a minimal body
    action = create()
    # Then it is at 0.0.1, unpublished, default limits, annotated with its kind, and
    # (as in OpenWhisk, on creation only) gets no API key unless it asks for one
    assert action.version == "0.0.1"
    assert action.publish is False
    assert action.exec == CodeExec("nodejs:20", NODE["code"], False)
    assert action.limits == ActionLimits()
    assert action.parameters == []
    assert action.annotations == [
        {"key": "provide-api-key", "value": False},
        {"key": "exec", "value": "nodejs:20"},
    ]
    assert action.provides_api_key is False


@pytest.mark.parametrize(
    ("value", "provides"),
    [(True, True), (1, True), ("yes", True), ({}, True), ([], True),
     (False, False), (0, False), ("", False), (None, False)],
)  # fmt: skip
def test_a_given_provide_api_key_is_kept_and_judged_by_truthiness(
    value: Any, provides: bool
) -> None:
    # Given a body with its own provide-api-key annotation / Then it is kept as given
    action = create(annotations=[{"key": "provide-api-key", "value": value}])
    assert params.get(action.annotations, "provide-api-key", "absent") == value
    # And OpenWhisk's truthiness decides whether runs get the key
    assert action.provides_api_key is provides


def test_an_absent_provide_api_key_means_the_key_is_given() -> None:
    # Given the flag off (or an action stored before the annotation existed)
    action = Action.create(PATH, {"exec": NODE}, require_api_key_annotation=False)
    # Then no annotation is added, and absent counts as true
    assert params.get(action.annotations, "provide-api-key", "absent") == "absent"
    assert action.provides_api_key is True
    # And an update never adds it
    updated = action.update({"annotations": [{"key": "x", "value": 1}]})
    assert params.get(updated.annotations, "provide-api-key", "absent") == "absent"
    assert updated.provides_api_key is True


def test_create_takes_the_bodys_fields_and_ignores_extras() -> None:
    action = create(
        name="ignored",
        namespace="ignored",
        version="1.2.3",
        publish=True,
        parameters=[{"key": "p", "value": 1}],
        annotations=[{"key": "exec", "value": "python:3.11"}, {"key": "web-export", "value": True}],
        limits={"timeout": 1000},
    )
    assert action.path == PATH
    assert action.version == "1.2.3"
    assert action.publish is True
    assert action.parameters == [{"key": "p", "value": 1}]
    # the server's exec annotation replaces the client's
    assert params.get(action.annotations, "exec") == "nodejs:20"
    assert params.get(action.annotations, "web-export") is True
    assert action.limits == ActionLimits(timeout=1000)


@pytest.mark.parametrize("body", [{}, {"exec": None}, [], "x", {"parameters": []}])
def test_create_needs_an_exec_object(body: Any) -> None:
    with pytest.raises(BadRequest) as e:
        Action.create(PATH, body)
    assert e.value.message.startswith("The request content was malformed")


def test_update_merges_and_bumps_the_version() -> None:
    # Given a stored action
    action = create(
        parameters=[{"key": "p", "value": 1}],
        annotations=[{"key": "a", "value": "old"}, {"key": "b", "value": "kept"}],
        limits={"timeout": 5000, "memory": 128},
    )
    # When a partial body updates it
    updated = action.update(
        {"limits": {"memory": 512}, "annotations": [{"key": "a", "value": "new"}]}
    )
    # Then unspecified fields are kept, limits and annotations merge, the patch is bumped
    assert updated.version == "0.0.2"
    assert updated.exec == action.exec
    assert updated.parameters == [{"key": "p", "value": 1}]
    assert updated.limits == ActionLimits(timeout=5000, memory=512)
    assert params.as_dict(updated.annotations) == {
        "a": "new",
        "b": "kept",
        "provide-api-key": False,
        "exec": "nodejs:20",
    }
    assert updated.update({}).version == "0.0.3"


def test_update_replaces_parameters_and_moves_the_exec_annotation() -> None:
    action = create(parameters=[{"key": "p", "value": 1}])
    updated = action.update(
        {
            "exec": {"kind": "python:default", "code": "def main(a): return a"},
            "parameters": [{"key": "q", "value": 2}],
            "publish": True,
        }
    )
    assert updated.exec.kind == "python:3.13"
    assert params.get(updated.annotations, "exec") == "python:3.13"
    assert updated.parameters == [{"key": "q", "value": 2}]
    assert updated.publish is True
    # an empty parameter list clears them
    assert updated.update({"parameters": []}).parameters == []


def test_invalid_update_raises_before_anything_changes() -> None:
    action = create()
    with pytest.raises(BadRequest):
        action.update({"limits": {"memory": 1}})
    with pytest.raises(BadRequest):
        action.update({"exec": {"kind": "nodejs:1", "code": "x"}})
    assert action.version == "0.0.1"


def test_json_views() -> None:
    action = Action.create(IN_PKG, {"exec": NODE, "parameters": [{"key": "p", "value": 1}]})
    full = action.to_json()
    assert full["namespace"] == "guest/pkg"
    assert full["name"] == "hello"
    assert full["exec"] == {"kind": "nodejs:20", "code": NODE["code"], "binary": False}
    assert full["limits"] == {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
    assert full["parameters"] == [{"key": "p", "value": 1}]
    assert set(full) == {
        "namespace",
        "name",
        "version",
        "exec",
        "annotations",
        "parameters",
        "limits",
        "publish",
        "updated",
    }
    assert action.to_json(code=False)["exec"] == {"kind": "nodejs:20", "binary": False}
    summary = action.summary_json()
    assert summary["exec"] == {"binary": False}
    assert "parameters" not in summary
    assert summary["namespace"] == "guest/pkg"


def test_store_round_trip() -> None:
    action = create(parameters=[{"key": "p", "value": 1}], limits={"memory": 128})
    stored = action.to_store()
    assert "updated" not in stored
    back = Action.from_store(PATH, stored, "1-abc", 1234)
    assert back.to_json() == {**action.to_json(), "updated": 1234}
    assert back.rev == "1-abc"


def test_derived_values_are_worked_out_once_and_again_on_replace() -> None:
    # Given an action with a final, conductor annotation and default parameters, one of
    # them an init parameter
    action = create(
        annotations=[
            {"key": "final", "value": True},
            {"key": "conductor", "value": "yes"},
            {"key": "provide-api-key", "value": True},
        ],
        parameters=[{"key": "a", "value": 1}, {"key": "e", "value": "x", "init": True}],
    )
    # Then what the invoke path reads of them is there, as fields
    assert (action.final, action.conductor, action.provides_api_key) == (True, True, True)
    assert action.run_defaults == {"a": 1}
    assert action.init_defaults == {"e": "x"}
    # And they do not take part in equality nor the repr
    assert "run_defaults" not in repr(action)
    # When the action is replaced with other annotations and parameters
    changed = replace(action, annotations=[], parameters=[{"key": "b", "value": 2}])
    # Then its derived values follow (an absent provide-api-key still gives the key)
    assert (changed.final, changed.conductor, changed.provides_api_key) == (False, False, True)
    assert (changed.run_defaults, changed.init_defaults) == ({"b": 2}, {})


@pytest.mark.parametrize("path", [PATH, IN_PKG])
@pytest.mark.parametrize(("cause", "caused_by"), [(None, None), ("a" * 32, "sequence")])
def test_pending_invocation_is_the_pending_record_of_the_action(
    path: EntityPath, cause: str | None, caused_by: str | None
) -> None:
    # Given an action (in a package or not) whose limits changed by an update
    action = Action.create(path, {"exec": NODE}).update({"limits": {"timeout": 1234}})
    # When its pending record is built from its derived fields
    record = pending_invocation(
        action,
        namespace="ns",
        subject="subj",
        activation_id="b" * 32,
        accepted_ms=1700,
        cause=cause,
        caused_by=caused_by,
    )
    # Then it is the record pending_record builds, byte for byte once encoded
    expected = pending_record(
        namespace="ns",
        subject="subj",
        activation_id="b" * 32,
        name=path.name,
        path=path.fqn.lstrip("/"),
        version=action.version,
        accepted_ms=1700,
        annotations=[
            {"key": "kind", "value": action.exec.kind},
            {"key": "limits", "value": action.limits.to_json()},
            *([{"key": "causedBy", "value": caused_by}] if caused_by else []),
        ],
        cause=cause,
    )
    assert activation.encode(record) == activation.encode(expected)
    assert action.limits_json == {**ActionLimits().to_json(), "timeout": 1234}
    # And the record's limits are its own: changing them leaves the action's alone
    record.annotations[2]["value"]["timeout"] = 1
    assert action.limits_json["timeout"] == 1234
