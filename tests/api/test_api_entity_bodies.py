"""Entity PUT bodies, taken as OpenWhisk's JSON unmarshaller takes them: only
``application/json`` (415 otherwise), and an empty body is malformed content (400), never
an entity made of defaults."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from apisupport import NOT_FOUND, NS, assert_error

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
COLLECTIONS = ["actions", "packages", "triggers", "rules"]
# spray-json's parser on no input, after pekko-http's "malformed" prefix.
EMPTY = (
    "The request content was malformed:\n"
    "Unexpected end-of-input at input index 0 (line 1, position 1), expected JSON Value:\n\n^\n"
)


def unsupported(content_type: str) -> str:
    return (
        f"The request's Content-Type [{content_type}] is not supported. Expected:\napplication/json"
    )


@pytest.mark.parametrize("collection", COLLECTIONS)
@pytest.mark.parametrize("headers", [{}, {"Content-Type": "application/json"}])
async def test_an_empty_body_is_malformed_content(
    client: httpx.AsyncClient, unique: Unique, collection: str, headers: dict[str, str]
) -> None:
    # When an entity is PUT with no body (with or without the JSON content type)
    name = unique("empty")
    r = await client.put(f"{NS}/{collection}/{name}", headers=headers)
    # Then 400 with OpenWhisk's message, and nothing was created
    assert_error(r, 400, EMPTY)
    assert_error(await client.get(f"{NS}/{collection}/{name}"), 404, NOT_FOUND)


@pytest.mark.parametrize("collection", COLLECTIONS)
@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"Content-Type": "text/plain"}, "text/plain"),
        ({"Content-Type": "text/plain;charset=utf-8"}, "text/plain; charset=UTF-8"),
        (
            {"Content-Type": "application/x-www-form-urlencoded"},
            "application/x-www-form-urlencoded",
        ),
        ({}, "application/octet-stream"),  # a body sent without a content type
    ],
)
async def test_a_body_that_is_not_json_is_415(
    client: httpx.AsyncClient,
    unique: Unique,
    collection: str,
    headers: dict[str, str],
    named: str,
) -> None:
    # When an entity is PUT with a JSON text but not as application/json
    name = unique("typed")
    r = await client.put(f"{NS}/{collection}/{name}", content=b"{}", headers=headers)
    # Then 415 naming the type pekko-http saw, and nothing was created
    assert_error(r, 415, unsupported(named))
    assert_error(await client.get(f"{NS}/{collection}/{name}"), 404, NOT_FOUND)


@pytest.mark.parametrize("collection", ["packages", "triggers"])
async def test_an_empty_object_with_a_charset_creates_and_an_empty_update_changes_nothing(
    client: httpx.AsyncClient, unique: Unique, collection: str
) -> None:
    # Given an entity created from "{}" sent as JSON with a charset (what clients send)
    name = unique("charset")
    url = f"{NS}/{collection}/{name}"
    headers = {"Content-Type": "application/json; charset=utf-8"}
    r = await client.put(url, content=b"{}", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == "0.0.1"
    # When it is overwritten with no body / Then 400, and it is not bumped to defaults
    assert_error(await client.put(url, params={"overwrite": "true"}), 400, EMPTY)
    assert (await client.get(url)).json()["version"] == "0.0.1"
