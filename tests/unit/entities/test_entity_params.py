"""Key/value lists (parameters, annotations) and the small shared checks."""

from __future__ import annotations

import pytest

from squall.entities import params
from squall.entities.common import bump_patch, check_publish, check_version, require_object
from squall.errors import BadRequest, PayloadTooLarge

MALFORMED = "The request content was malformed:\n"


def test_parse_keeps_order_and_last_wins() -> None:
    raw = [
        {"key": "a", "value": 1},
        {"key": "b", "value": {"nested": [1, 2]}},
        {"key": "a", "value": 3},
        {"key": "c"},
    ]
    assert params.parse_key_values(raw, "parameters") == [
        {"key": "a", "value": 3},
        {"key": "b", "value": {"nested": [1, 2]}},
        {"key": "c", "value": None},
    ]
    assert params.parse_key_values(None, "parameters") == []


def test_parse_keeps_init_only_when_true() -> None:
    raw = [{"key": "a", "value": 1, "init": True}, {"key": "b", "value": 2, "init": False}]
    assert params.parse_key_values(raw, "parameters") == [
        {"key": "a", "value": 1, "init": True},
        {"key": "b", "value": 2},
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"a": 1}, "'annotations' must be an array."),
        ("a=1", "'annotations' must be an array."),
        ([{"value": 1}], "'annotations' entries must be objects with a string 'key'."),
        ([{"key": 1, "value": 1}], "'annotations' entries must be objects with a string 'key'."),
        (["a"], "'annotations' entries must be objects with a string 'key'."),
    ],
)
def test_parse_rejects_malformed_lists(raw: object, message: str) -> None:
    with pytest.raises(BadRequest) as e:
        params.parse_key_values(raw, "annotations")
    assert e.value.message == MALFORMED + message


def test_parameters_over_1_mb_are_413() -> None:
    raw = [{"key": "big", "value": "x" * (1024 * 1024)}]
    with pytest.raises(PayloadTooLarge) as e:
        params.parse_key_values(raw, "parameters")
    assert e.value.message.startswith("Parameters larger than allowed: ")
    assert e.value.message.endswith(" > 1048576 bytes.")


def test_merge_get_set_and_as_dict() -> None:
    base = [{"key": "a", "value": 1}, {"key": "b", "value": 2}]
    merged = params.merge(base, [{"key": "b", "value": 20}, {"key": "c", "value": 30}])
    assert merged == [
        {"key": "a", "value": 1},
        {"key": "b", "value": 20},
        {"key": "c", "value": 30},
    ]
    # merging does not touch its inputs
    assert base == [{"key": "a", "value": 1}, {"key": "b", "value": 2}]
    assert params.get(merged, "c") == 30
    assert params.get(merged, "missing", "dflt") == "dflt"
    assert params.set_value(merged, "a", "x")[0] == {"key": "a", "value": "x"}
    kvs: list[dict[str, object]] = [
        {"key": "env", "value": "e", "init": True},
        {"key": "arg", "value": "a"},
    ]
    assert params.as_dict(kvs) == {"env": "e", "arg": "a"}
    assert params.as_dict(kvs, init=True) == {"env": "e"}
    assert params.as_dict(kvs, init=False) == {"arg": "a"}


@pytest.mark.parametrize(("before", "after"), [("0.0.1", "0.0.2"), ("1.2.9", "1.2.10")])
def test_bump_patch(before: str, after: str) -> None:
    assert bump_patch(before) == after


def test_version_publish_and_object_checks() -> None:
    assert check_version(None) is None
    assert check_version("2.0.1") == "2.0.1"
    bad: object
    for bad in ("1.0", "a.b.c", 1, "1.0.0-beta"):
        with pytest.raises(BadRequest):
            check_version(bad)
    assert check_publish(None) is None
    assert check_publish(True) is True
    with pytest.raises(BadRequest):
        check_publish("true")
    assert require_object({"a": 1}) == {"a": 1}
    for bad in ([], "x", None, 1):
        with pytest.raises(BadRequest) as e:
            require_object(bad)
        assert e.value.message == MALFORMED + "expected a JSON object."
