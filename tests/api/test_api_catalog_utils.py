"""``/whisk.system/utils``: each action invoked with the parameters of OpenWhisk's
catalog (``apache/openwhisk-catalog``, ``packages/utils``) gives that catalog's results."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from apisupport import GUEST, NS, node_action

pytestmark = pytest.mark.anyio

SYSTEM = "/api/v1/namespaces/whisk.system"
SHOW_HOST = "function main() { return {host: process.env.__OW_API_HOST}; }"


async def invoke(
    client: httpx.AsyncClient, action: str, payload: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The full record of a blocking invoke of ``/whisk.system/<action>``."""
    r = await client.post(
        f"{SYSTEM}/actions/{action}", params={"blocking": "true"}, json=payload or {}
    )
    assert r.status_code in (200, 502), r.text
    record: dict[str, Any] = r.json()
    return record


async def result(
    client: httpx.AsyncClient, action: str, payload: dict[str, Any] | None = None
) -> Any:
    """The result of a successful blocking invoke of ``/whisk.system/<action>``."""
    record = await invoke(client, action, payload)
    assert record["response"]["status"] == "success", record
    return record["response"]["result"]


async def test_echo_returns_its_input(client: httpx.AsyncClient) -> None:
    assert await result(client, "utils/echo", {"payload": "Five fuzzy felines"}) == {
        "payload": "Five fuzzy felines"
    }
    nested = {"a": [1, {"b": None}], "c": True}
    assert await result(client, "utils/echo", nested) == nested
    assert await result(client, "utils/echo") == {}


async def test_cat_joins_lines(client: httpx.AsyncClient) -> None:
    assert await result(client, "utils/cat", {"lines": [4, 2, 3]}) == {
        "lines": [4, 2, 3],
        "payload": "4\n2\n3",
    }
    assert await result(client, "utils/cat") == {"lines": [], "payload": ""}


async def test_sort_sorts_as_javascript_does(client: httpx.AsyncClient) -> None:
    # Given / When / Then: upstream's sample
    assert await result(client, "utils/sort", {"lines": [4, 2, 3]}) == {
        "lines": [2, 3, 4],
        "length": 3,
    }
    # And elements are compared as strings (JavaScript's default sort), so 10 < 9
    assert await result(client, "utils/sort", {"lines": [9, 10, "b", "a"]}) == {
        "lines": [10, 9, "a", "b"],
        "length": 4,
    }
    # And no lines is an empty sorted list, as `wsk action invoke /whisk.system/utils/sort`
    record = await invoke(client, "utils/sort")
    assert record["response"]["result"] == {"lines": [], "length": 0}
    assert record["namespace"] == GUEST
    assert any("sort after: " in line for line in record["logs"])


async def test_split_splits_a_string(client: httpx.AsyncClient) -> None:
    assert await result(client, "utils/split", {"payload": "one,two,three", "separator": ","}) == {
        "lines": ["one", "two", "three"],
        "payload": "one,two,three",
    }
    # By default at each line end, \r\n included
    assert await result(client, "utils/split", {"payload": "a\nb\r\nc"}) == {
        "lines": ["a", "b", "c"],
        "payload": "a\nb\r\nc",
    }
    # Without a payload it fails, as OpenWhisk's does (it reads payload.toString())
    record = await invoke(client, "utils/split")
    assert record["response"]["status"] == "action developer error"
    assert "TypeError" in record["response"]["result"]["error"]


async def test_head_takes_a_prefix(client: httpx.AsyncClient) -> None:
    assert await result(client, "utils/head", {"lines": [4, 2, 3], "num": 2}) == {
        "lines": [4, 2],
        "num": 2,
    }
    assert await result(client, "utils/head", {"lines": [4, 2, 3]}) == {"lines": [4], "num": 1}


async def test_date_is_now_in_iso_8601(client: httpx.AsyncClient) -> None:
    record = await invoke(client, "utils/date")
    date = record["response"]["result"]["date"]
    assert date.endswith("Z")
    assert datetime.fromisoformat(date).tzinfo is not None
    assert any("It is now " in line for line in record["logs"])


async def test_smash_nests_the_parameters(client: httpx.AsyncClient) -> None:
    sample = {"a": 1, "b": {"c": 2, "d": 3}, "$fieldName": "p"}
    assert await result(client, "utils/smash", sample) == {"p": {"a": 1, "b": {"c": 2, "d": 3}}}
    # Without $fieldName: an application error with OpenWhisk's message
    record = await invoke(client, "utils/smash", {"a": 1})
    assert record["response"]["status"] == "application error"
    assert record["response"]["result"] == {
        "error": "Expected an argument '$fieldName' of type 'string'."
    }


async def test_namespace_is_the_callers(client: httpx.AsyncClient) -> None:
    assert await result(client, "utils/namespace") == {"namespace": GUEST}


async def test_hosturl_builds_activation_urls(
    client: httpx.AsyncClient, unique: Callable[[str], str]
) -> None:
    # Given the API host an action of the caller sees (the one hosturl builds on)
    show = unique("show-host")
    r = await client.put(f"{NS}/actions/{show}", json=node_action(SHOW_HOST))
    assert r.status_code == 200, r.text
    r = await client.post(
        f"{NS}/actions/{show}", params={"blocking": "true", "result": "true"}, json={}
    )
    host = r.json()["host"]
    assert host
    api = f"{host}/api/v1/namespaces/{GUEST}"
    web = f"{host}/api/v1/web/{GUEST}"
    # When / Then: actions, triggers and web actions, with upstream's parameters
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, f"{api}/actions"),
        ({"path": "hello"}, f"{api}/actions/hello"),
        ({"path": "pkg/hello"}, f"{api}/actions/pkg/hello"),
        ({"trigger": True, "path": "tick"}, f"{api}/triggers/tick"),
        ({"web": True, "path": "utils/echo"}, f"{web}/utils/echo"),
        ({"web": True, "path": "hello", "ext": ".json"}, f"{web}/default/hello.json"),
        ({"web": True}, web),
    ]
    for args, url in cases:
        assert await result(client, "utils/hosturl", args) == {"url": url}, args
    # And what cannot be addressed is an application error with upstream's message
    errors: list[tuple[dict[str, Any], str]] = [
        ({"web": True, "trigger": True, "path": "t"}, "triggers are not allowed for web actions."),
        (
            {"web": True, "path": "hello", "ext": ".xml"},
            'extension for web action must be one of [".html", ".http", ".json", ".svg", ".text"].',
        ),
        ({"trigger": True, "path": "pkg/t"}, "triggers are not allowed in packages."),
    ]
    for args, message in errors:
        record = await invoke(client, "utils/hosturl", args)
        assert record["response"]["status"] == "application error", args
        assert record["response"]["result"] == {"error": message}
