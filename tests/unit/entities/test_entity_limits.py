"""Action limits: defaults, partial merging, ranges and OpenWhisk's messages."""

from __future__ import annotations

from typing import Any

import pytest

from squall.entities.limits import MAX_CONCURRENCY, ActionLimits
from squall.errors import BadRequest

MALFORMED = "The request content was malformed:\n"


def test_defaults_are_openwhisks() -> None:
    assert ActionLimits().to_json() == {
        "timeout": 60000,
        "memory": 256,
        "logs": 10,
        "concurrency": 1,
    }
    assert ActionLimits.from_json(None) == ActionLimits()
    assert ActionLimits.from_json({}) == ActionLimits()


def test_partial_limits_merge_over_the_base() -> None:
    # Given stored limits
    base = ActionLimits(timeout=5000, memory=128, logs=5, concurrency=2)
    # When a partial update names only memory / Then the rest comes from the base
    merged = ActionLimits.from_json({"memory": 512}, base)
    assert merged == ActionLimits(timeout=5000, memory=512, logs=5, concurrency=2)
    # And no limits at all keeps the base
    assert ActionLimits.from_json(None, base) is base
    # And a null field counts as absent
    assert ActionLimits.from_json({"timeout": None, "logs": 1}, base).timeout == 5000


@pytest.mark.parametrize(
    "limits",
    [
        {"timeout": 100},
        {"timeout": 300_000},
        {"memory": 128},
        {"memory": 512},
        {"logs": 0},
        {"logs": 10},
        {"concurrency": 1},
        {"concurrency": MAX_CONCURRENCY},
        {"memory": 256.0},
    ],
)
def test_bounds_are_inclusive(limits: dict[str, Any]) -> None:
    parsed = ActionLimits.from_json(limits).to_json()
    for key, value in limits.items():
        assert parsed[key] == value


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (
            {"timeout": 99},
            "requirement failed: duration 99 milliseconds below allowed threshold of "
            "100 milliseconds",
        ),
        (
            {"timeout": 300_001},
            "requirement failed: duration 300001 milliseconds exceeds allowed threshold of "
            "300000 milliseconds",
        ),
        ({"memory": 127}, "requirement failed: memory 127 MB below allowed threshold of 128 MB"),
        ({"memory": 513}, "requirement failed: memory 513 MB exceeds allowed threshold of 512 MB"),
    ],
)
def test_out_of_range_messages(limits: dict[str, Any], message: str) -> None:
    # When a limit is out of range / Then 400 in OpenWhisk's words
    with pytest.raises(BadRequest) as e:
        ActionLimits.from_json(limits)
    assert e.value.message == MALFORMED + message


@pytest.mark.parametrize(
    ("limits", "bound"),
    [
        ({"logs": -1}, "0"),
        ({"logs": 11}, "10"),
        ({"concurrency": 0}, "1"),
        ({"concurrency": MAX_CONCURRENCY + 1}, str(MAX_CONCURRENCY)),
    ],
)
def test_other_ranges(limits: dict[str, Any], bound: str) -> None:
    with pytest.raises(BadRequest) as e:
        ActionLimits.from_json(limits)
    assert e.value.message.startswith(MALFORMED)
    assert e.value.message.rstrip().split("threshold of ")[1].startswith(bound)


@pytest.mark.parametrize(
    "limits",
    [
        {"timeout": "60000"},
        {"memory": True},
        {"logs": 1.5},
        {"concurrency": [1]},
        {"memory": {"mb": 256}},
    ],
)
def test_non_integer_limits_are_400(limits: dict[str, Any]) -> None:
    with pytest.raises(BadRequest) as e:
        ActionLimits.from_json(limits)
    field = next(iter(limits))
    assert e.value.message == f"{MALFORMED}'{field}' must be an integer."


@pytest.mark.parametrize("raw", [[], "256", 5])
def test_limits_must_be_an_object(raw: object) -> None:
    with pytest.raises(BadRequest) as e:
        ActionLimits.from_json(raw)
    assert e.value.message == f"{MALFORMED}'limits' must be an object."


def test_from_stored_fills_missing_fields() -> None:
    assert ActionLimits.from_stored({"memory": 128}) == ActionLimits(memory=128)
    assert ActionLimits.from_stored({}) == ActionLimits()
