"""``records.activation_key``: the row key of an activation record, its entity path from
the ``path`` annotation (the package prefixed when there is one), wherever that is."""

from __future__ import annotations

from typing import Any

import pytest

from squall.entities.activation import Activation, ActivationResponse
from squall.store.records import activation_key


def record(annotations: list[dict[str, Any]]) -> Activation:
    return Activation(
        namespace="guest",
        name="act",
        subject="guest",
        activation_id="a" * 32,
        start=1234,
        end=0,
        version="0.0.1",
        response=ActivationResponse.waiting(),
        annotations=annotations,
    )


@pytest.mark.parametrize(
    ("annotations", "name"),
    [
        ([{"key": "path", "value": "guest/pkg/act"}], "pkg/act"),
        ([{"key": "path", "value": "/guest/pkg/act"}], "pkg/act"),  # a leading "/"
        ([{"key": "path", "value": "guest/act"}], "act"),
        ([{"key": "path", "value": "a/b/c/d"}], "act"),  # not three segments
        ([{"key": "path", "value": 3}], "act"),  # not a string
        ([{"key": "path"}], "act"),  # no value
        ([], "act"),
        # Not first: the look-up finds it, the first of two wins
        ([{"key": "kind", "value": "x"}, {"key": "path", "value": "g/p/act"}], "p/act"),
        ([{"value": 1}, {"key": "path", "value": "g/q/act"}], "q/act"),
        ([{"key": "path", "value": "g/p/act"}, {"key": "path", "value": "g/act"}], "p/act"),
    ],
)
def test_the_entity_path_is_read_from_the_path_annotation(
    annotations: list[dict[str, Any]], name: str
) -> None:
    assert activation_key(record(annotations)) == ("a" * 32, "guest", name, 1234)
