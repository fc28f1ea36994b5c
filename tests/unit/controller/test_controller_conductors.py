"""How a conductor's ``action`` is read, and the composition messages (OpenWhisk's)."""

from __future__ import annotations

from typing import Any

import pytest

from squall.controller.conductors import component_invalid_message, resolve_name
from squall.entities.names import EntityPath


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a", EntityPath("me", "", "a")),
        ("pkg/a", EntityPath("me", "pkg", "a")),
        ("/ns/a", EntityPath("ns", "", "a")),
        ("/ns/pkg/a", EntityPath("ns", "pkg", "a")),
        ("ns/pkg/a", EntityPath("ns", "pkg", "a")),
        ("/_/a", EntityPath("me", "", "a")),
        ("_/pkg/a", EntityPath("me", "pkg", "a")),
    ],
)
def test_names_resolve_like_openwhisk(value: str, expected: EntityPath) -> None:
    assert resolve_name(value, "me") == expected


@pytest.mark.parametrize("value", ["/a", "", "a/b/c/d", "invalid#Action", 42, None, ["a"]])
def test_unusable_names(value: Any) -> None:
    assert resolve_name(value, "me") is None


def test_invalid_name_message_quotes_the_json_value() -> None:
    assert component_invalid_message("x#y") == (
        'Failed to parse action name from json value "x#y" during composition.'
    )
    assert component_invalid_message(42) == (
        "Failed to parse action name from json value 42 during composition."
    )
