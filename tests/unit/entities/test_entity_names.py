"""Entity names, namespaces and fully qualified names (OpenWhisk's validation)."""

from __future__ import annotations

import pytest

from squall.entities.names import (
    ENTITY_NAME_ILLEGAL,
    MALFORMED_FQN,
    NAMESPACE_ILLEGAL,
    EntityPath,
    check_name,
    check_namespace,
    is_valid_name,
    parse_fqn,
)
from squall.errors import BadRequest


@pytest.mark.parametrize(
    "name",
    ["a", "_", "9", "hello", "a b", "a@b.c&d-e", "name.", "x-", "A_Z", "a" * 256, "a1"],
)
def test_valid_names(name: str) -> None:
    # Given a name OpenWhisk accepts / Then it is valid and check_name returns it
    assert is_valid_name(name)
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", " ", " a", "a ", "-a", "@a", ".a", "a/b", "a$", "a*b", "a;b", "a\nb", "é", "aé", "a:b"],
)
def test_illegal_names(name: str) -> None:
    # Given a name outside \A([\w]|[\w][\w@ .&-]{0,254}[\w@.&-])\z (ASCII \w)
    assert not is_valid_name(name)
    # When checked / Then 400 with OpenWhisk's message
    with pytest.raises(BadRequest) as e:
        check_name(name)
    assert e.value.message == ENTITY_NAME_ILLEGAL
    assert e.value.status == 400


def test_name_longer_than_256_has_its_own_message() -> None:
    assert not is_valid_name("a" * 257)
    with pytest.raises(BadRequest) as e:
        check_name("a" * 257)
    assert e.value.message == "Entity name longer than allowed: 257 > 256."


def test_namespace_check() -> None:
    assert check_namespace("_") == "_"
    assert check_namespace("guest") == "guest"
    assert check_namespace("user@example.com") == "user@example.com"
    with pytest.raises(BadRequest) as e:
        check_namespace("bad/ns")
    assert e.value.message == NAMESPACE_ILLEGAL


def test_entity_path_forms() -> None:
    top = EntityPath("guest", "", "a")
    assert top.path == "a"
    assert top.entity_namespace == "guest"
    assert top.fqn == "/guest/a"
    assert str(top) == "/guest/a"
    inner = EntityPath("guest", "pkg", "a")
    assert inner.path == "pkg/a"
    assert inner.entity_namespace == "guest/pkg"
    assert inner.fqn == "/guest/pkg/a"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/ns/a", EntityPath("ns", "", "a")),
        ("/ns/pkg/a", EntityPath("ns", "pkg", "a")),
        ("/_/a", EntityPath("guest", "", "a")),
        ("/_/pkg/a", EntityPath("guest", "pkg", "a")),
        ("a", EntityPath("guest", "", "a")),
        ("pkg/a", EntityPath("guest", "pkg", "a")),
        ("  /ns/a  ", EntityPath("ns", "", "a")),
    ],
)
def test_parse_fqn(text: str, expected: EntityPath) -> None:
    # When a reference is parsed with "guest" as the caller's namespace
    assert parse_fqn(text, "guest") == expected


@pytest.mark.parametrize(
    "text", ["", "/", "/ns", "/ns/", "//a", "/ns/p/a/b", "a/b/c", "a//b", "/a//b"]
)
def test_malformed_fqn(text: str) -> None:
    with pytest.raises(BadRequest) as e:
        parse_fqn(text, "guest")
    assert e.value.message == MALFORMED_FQN


def test_fqn_with_illegal_parts() -> None:
    with pytest.raises(BadRequest) as e:
        parse_fqn("/ns/a$b", "guest")
    assert e.value.message == ENTITY_NAME_ILLEGAL
    with pytest.raises(BadRequest) as e:
        parse_fqn("/n$s/a", "guest")
    assert e.value.message == NAMESPACE_ILLEGAL
