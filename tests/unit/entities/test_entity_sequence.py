"""Sequence entities: component references, the sequence exec's JSON, conductors."""

from __future__ import annotations

from typing import Any

import pytest

from squall.entities.action import Action
from squall.entities.kinds import CodeExec
from squall.entities.names import EntityPath
from squall.entities.sequence import (
    SequenceExec,
    exec_from_request,
    exec_from_stored,
    is_conductor,
    is_truthy,
    parse_component,
)
from squall.errors import BadRequest

SEQ = {"kind": "sequence", "components": ["/_/a", "/other/pkg/b", "guest/c"]}


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("/guest/a", EntityPath("guest", "", "a")),
        ("guest/a", EntityPath("guest", "", "a")),
        ("/_/a", EntityPath("me", "", "a")),
        ("/ns/pkg/a", EntityPath("ns", "pkg", "a")),
        ("_/pkg/a", EntityPath("me", "pkg", "a")),
    ],
)
def test_components_are_fully_qualified(reference: str, expected: EntityPath) -> None:
    assert parse_component(reference, "me") == expected


@pytest.mark.parametrize("reference", ["a", "/a", "/a/b/c/d", "/a//b", 3, None, "/ns/bad$name"])
def test_malformed_components_are_400(reference: Any) -> None:
    with pytest.raises(BadRequest):
        parse_component(reference, "me")


def test_sequence_exec_from_request_and_back() -> None:
    # Given the exec of a PUT body / When parsed for namespace "me"
    exec_ = exec_from_request(SEQ, "me")
    # Then "_" is resolved, JSON is fully qualified, and it reads back the same
    assert isinstance(exec_, SequenceExec)
    assert exec_.kind == "sequence" and exec_.binary is False
    expected = ["/me/a", "/other/pkg/b", "/guest/c"]
    assert exec_.to_json() == {"kind": "sequence", "components": expected}
    assert exec_.to_json(code=False) == exec_.to_json()
    assert exec_from_stored(exec_.to_json()) == exec_
    assert exec_.parameters() == [{"key": "_actions", "value": expected}]


def test_kind_is_read_like_openwhisk_and_code_kinds_still_work() -> None:
    assert isinstance(exec_from_request({**SEQ, "kind": " Sequence "}, "me"), SequenceExec)
    code = exec_from_request({"kind": "nodejs:default", "code": "x"}, "me")
    assert isinstance(code, CodeExec) and code.kind == "nodejs:20"


@pytest.mark.parametrize("components", [None, "/_/a", {"a": 1}])
def test_components_must_be_an_array(components: Any) -> None:
    raw = (
        {"kind": "sequence"}
        if components is None
        else {"kind": "sequence", "components": components}
    )
    with pytest.raises(BadRequest):
        exec_from_request(raw, "me")


def test_an_empty_sequence_parses_the_controller_refuses_it() -> None:
    # (the controller knows the limit and checks emptiness in OpenWhisk's order)
    assert exec_from_request({"kind": "sequence", "components": []}, "me") == SequenceExec(())


@pytest.mark.parametrize(
    ("value", "truthy"),
    [(True, True), (False, False), (1, True), (0, False), ("true", True), ("", False),
     (None, False), ({}, True), ([], True)],
)  # fmt: skip
def test_truthiness_is_openwhisks(value: Any, truthy: bool) -> None:
    assert is_truthy(value) is truthy


def test_only_code_actions_are_conductors() -> None:
    annotations = [{"key": "conductor", "value": True}]
    code = CodeExec("nodejs:20", "x", False)
    assert is_conductor(code, annotations)
    assert not is_conductor(code, [])
    assert not is_conductor(SequenceExec((EntityPath("a", "", "b"),)), annotations)


def test_action_with_a_sequence_round_trips_through_the_store() -> None:
    action = Action.create(EntityPath("me", "", "s"), {"exec": SEQ})
    stored = Action.from_store(action.path, action.to_store(), "1-a", 5)
    assert stored.exec == action.exec
    assert stored.summary_json()["exec"] == {"binary": False}
