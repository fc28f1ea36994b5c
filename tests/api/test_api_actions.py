"""Actions: create, read, update, list, count, delete, packages, and request validation."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import pytest
from apisupport import (
    EXISTS,
    GUEST,
    ILLEGAL_NAME,
    NODE_HELLO,
    NOT_FOUND,
    NS,
    PY_HELLO,
    annotation,
    assert_error,
    clock_past,
    node_action,
    poll,
    python_action,
)

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
DEFAULT_LIMITS = {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}


async def put(client: httpx.AsyncClient, path: str, body: Any, **params: str) -> httpx.Response:
    return await client.put(f"{NS}/actions/{path}", json=body, params=params)


async def get(client: httpx.AsyncClient, path: str, **params: str) -> httpx.Response:
    return await client.get(f"{NS}/actions/{path}", params=params)


# -- create -----------------------------------------------------------------------------


async def test_create_returns_the_action_with_resolved_kind(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a new name / When an action is created with kind nodejs:default
    name = unique("hello")
    r = await put(client, name, node_action())
    # Then 200 with the whole action: default kind resolved, version 0.0.1, default limits
    assert r.status_code == 200, r.text
    action = r.json()
    assert action["namespace"] == GUEST
    assert action["name"] == name
    assert action["version"] == "0.0.1"
    assert action["publish"] is False
    assert action["exec"] == {"kind": "nodejs:20", "code": NODE_HELLO, "binary": False}
    assert action["limits"] == DEFAULT_LIMITS
    assert action["parameters"] == []
    assert annotation(action, "exec") == "nodejs:20"
    assert isinstance(action["updated"], int)
    # And GET returns the same document
    assert (await get(client, name)).json() == action


async def test_create_python_default_and_ignores_extra_fields(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a body as aio sends it, with an extra "name" field
    name = unique("py")
    body = python_action(name="ignored-name", parameters=[{"key": "a", "value": 1}])
    # When it is PUT
    r = await put(client, name, body)
    # Then the server takes the name from the path and resolves python:default
    assert r.status_code == 200, r.text
    action = r.json()
    assert action["name"] == name
    assert action["exec"]["kind"] == "python:3.13"
    assert annotation(action, "exec") == "python:3.13"
    assert action["parameters"] == [{"key": "a", "value": 1}]


async def test_server_sets_exec_annotation_over_the_clients(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a body that claims another exec annotation
    name = unique("annot")
    body = node_action(
        annotations=[{"key": "exec", "value": "python:3.11"}, {"key": "x", "value": 1}]
    )
    # When it is created / Then the server's exec annotation wins, others are kept
    action = (await put(client, name, body)).json()
    assert annotation(action, "exec") == "nodejs:20"
    assert annotation(action, "x") == 1


async def test_binary_is_decided_by_the_server(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given code that is base64 (an archive) and a client claiming binary for plain text
    zipped = "UEsDBAoAAAAAAAAAIQAAAAAAAAAAAAAAAAAAAAAA"
    plain = {"exec": {"kind": "nodejs:default", "code": NODE_HELLO, "binary": True}}
    archive = {"exec": {"kind": "nodejs:default", "code": zipped, "binary": False}}
    # When both are created / Then binary reflects the code, not the request
    assert (await put(client, unique("plain"), plain)).json()["exec"]["binary"] is False
    assert (await put(client, unique("zip"), archive)).json()["exec"]["binary"] is True


async def test_create_again_without_overwrite_is_409(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an existing action
    name = unique("twice")
    assert (await put(client, name, node_action())).status_code == 200
    # When it is created again without overwrite (also with overwrite=false)
    for params in ({}, {"overwrite": "false"}):
        r = await put(client, name, python_action(), **params)
        # Then 409 "resource already exists" and the action is unchanged
        assert_error(r, 409, EXISTS)
    current = (await get(client, name)).json()
    assert current["version"] == "0.0.1"
    assert current["exec"]["kind"] == "nodejs:20"


# -- update -----------------------------------------------------------------------------


async def test_update_bumps_version_and_merges(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given an action with parameters, limits and annotations
    name = unique("upd")
    first = node_action(
        parameters=[{"key": "p", "value": 1}],
        limits={"timeout": 5000, "memory": 128},
        annotations=[{"key": "a", "value": "old"}, {"key": "b", "value": "kept"}],
    )
    assert (await put(client, name, first)).status_code == 200
    # When it is updated with overwrite=true, a partial limit and one annotation
    r = await put(
        client,
        name,
        {"limits": {"memory": 512}, "annotations": [{"key": "a", "value": "new"}]},
        overwrite="true",
    )
    # Then the version is bumped, limits merged, annotations merged, the rest kept
    assert r.status_code == 200, r.text
    action = r.json()
    assert action["version"] == "0.0.2"
    assert action["limits"] == {**DEFAULT_LIMITS, "timeout": 5000, "memory": 512}
    assert annotation(action, "a") == "new"
    assert annotation(action, "b") == "kept"
    assert annotation(action, "exec") == "nodejs:20"
    assert action["parameters"] == [{"key": "p", "value": 1}]
    assert action["exec"]["code"] == NODE_HELLO
    # And a second update bumps again; a new kind moves the exec annotation along
    r = await put(client, name, python_action(), overwrite="true")
    action = r.json()
    assert action["version"] == "0.0.3"
    assert action["exec"]["kind"] == "python:3.13"
    assert annotation(action, "exec") == "python:3.13"
    assert (await get(client, name)).json()["version"] == "0.0.3"


async def test_overwrite_true_creates_when_missing(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # When overwrite=true names an action that does not exist / Then it is created at 0.0.1
    r = await put(client, unique("fresh"), node_action(), overwrite="true")
    assert r.status_code == 200
    assert r.json()["version"] == "0.0.1"


# -- read ---------------------------------------------------------------------------------


async def test_get_with_code_false_omits_code(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given an action
    name = unique("nocode")
    await put(client, name, node_action())
    # When it is read with code=false / Then exec has no code but keeps kind and binary
    action = (await get(client, name, code="false")).json()
    assert action["exec"] == {"kind": "nodejs:20", "binary": False}
    # And code=true (the default) includes it
    assert (await get(client, name, code="true")).json()["exec"]["code"] == NODE_HELLO


async def test_get_missing_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await get(client, "does-not-exist"), 404, NOT_FOUND)


async def test_head_reads_the_action_and_never_invokes_it(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an action
    name = unique("head")
    await put(client, name, node_action())
    # When it is asked for with HEAD / Then the answer is a GET's (a missing one a 404)
    r = await client.head(f"{NS}/actions/{name}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert (await client.head(f"{NS}/actions/{unique('missing')}")).status_code == 404
    # And nothing was invoked: no activation of it, pending or final, exists
    r = await client.get(f"{NS}/activations", params={"name": name})
    assert r.status_code == 200, r.text
    assert r.json() == []


# -- list and count ---------------------------------------------------------------------


async def test_list_view_has_binary_only_and_no_parameters(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an action with a parameter
    name = unique("listed")
    await put(client, name, node_action(parameters=[{"key": "secret", "value": "s"}]))
    # When actions are listed
    r = await client.get(f"{NS}/actions", params={"limit": "0"})
    assert r.status_code == 200
    entry = next(a for a in r.json() if a["name"] == name)
    # Then the entry has exec {binary} only and no parameters
    assert entry["exec"] == {"binary": False}
    assert "parameters" not in entry
    assert entry["namespace"] == GUEST
    assert entry["version"] == "0.0.1"
    assert annotation(entry, "exec") == "nodejs:20"


async def test_list_is_newest_first_and_paged(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given three actions created one after the other, each in a later millisecond
    names = [unique(f"page{i}") for i in range(3)]
    for n in names:
        updated = (await put(client, n, node_action())).json()["updated"]
        await poll(partial(clock_past, updated), what="the clock to pass the last update")
    # When listed with the default window
    listed = [a["name"] for a in (await client.get(f"{NS}/actions")).json()]
    # Then the newest come first
    positions = [listed.index(n) for n in reversed(names)]
    assert positions == sorted(positions)
    # And skip/limit page through the same order
    window = (await client.get(f"{NS}/actions", params={"skip": "1", "limit": "2"})).json()
    assert [a["name"] for a in window] == listed[1:3]


async def test_count(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given the current number of actions
    before = (await client.get(f"{NS}/actions", params={"count": "true"})).json()
    assert set(before) == {"actions"}
    # When two more are created
    await put(client, unique("c1"), node_action())
    await put(client, unique("c2"), node_action())
    # Then count=true reports two more, keyed by the collection name
    after = (await client.get(f"{NS}/actions", params={"count": "true"})).json()
    assert after == {"actions": before["actions"] + 2}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "201"}, "The value '201' is not in the range of 0 to 200 for actions."),
        ({"limit": "-1"}, "The value '-1' is not in the range of 0 to 200 for actions."),
        ({"skip": "-1"}, "The value '-1' is not greater than or equal to 0 for actions."),
        ({"limit": "ten"}, "The value 'ten' is not an integer for actions."),
        ({"skip": "x"}, "The value 'x' is not an integer for actions."),
    ],
)
async def test_bad_list_window_is_400(
    client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    # When a list is asked for with a bad skip or limit / Then 400 with OpenWhisk's text
    assert_error(await client.get(f"{NS}/actions", params=params), 400, message)


async def test_limit_200_is_allowed_and_0_means_200(client: httpx.AsyncClient) -> None:
    for limit in ("0", "200"):
        r = await client.get(f"{NS}/actions", params={"limit": limit})
        assert r.status_code == 200
        assert isinstance(r.json(), list)


# -- delete -----------------------------------------------------------------------------


async def test_delete_returns_the_entity_then_it_is_gone(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an action
    name = unique("del")
    created = (await put(client, name, node_action())).json()
    # When it is deleted / Then the answer is the deleted action
    r = await client.delete(f"{NS}/actions/{name}")
    assert r.status_code == 200
    deleted = r.json()
    assert deleted["name"] == name
    assert deleted["version"] == created["version"]
    assert deleted["exec"]["kind"] == "nodejs:20"
    # And it is gone: GET and a second DELETE are 404
    assert_error(await get(client, name), 404, NOT_FOUND)
    assert_error(await client.delete(f"{NS}/actions/{name}"), 404, NOT_FOUND)
    # And the name can be used again from 0.0.1
    assert (await put(client, name, node_action())).json()["version"] == "0.0.1"


# -- actions in packages ----------------------------------------------------------------


async def test_actions_in_a_package(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given a package and a top-level action
    pkg, inner = unique("pkg"), unique("inner")
    assert (await client.put(f"{NS}/packages/{pkg}", json={})).status_code == 200
    await put(client, unique("top"), node_action())
    # When an action is created inside the package
    r = await put(client, f"{pkg}/{inner}", node_action())
    # Then its namespace is "guest/pkg"
    assert r.status_code == 200, r.text
    assert r.json()["namespace"] == f"{GUEST}/{pkg}"
    assert r.json()["name"] == inner
    got = (await get(client, f"{pkg}/{inner}")).json()
    assert got["namespace"] == f"{GUEST}/{pkg}"
    # And listing the package's actions shows it, alone
    listed = (await client.get(f"{NS}/actions/{pkg}/")).json()
    assert [(a["namespace"], a["name"]) for a in listed] == [(f"{GUEST}/{pkg}", inner)]
    assert (await client.get(f"{NS}/actions/{pkg}/", params={"count": "true"})).json() == {
        "actions": 1
    }
    # And the namespace's list includes it, with its package in the namespace
    everything = (await client.get(f"{NS}/actions", params={"limit": "0"})).json()
    assert (f"{GUEST}/{pkg}", inner) in {(a["namespace"], a["name"]) for a in everything}
    # And it is not a top-level action
    assert_error(await get(client, inner), 404, NOT_FOUND)


async def test_put_action_into_missing_package_is_404(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # When an action is put into a package that does not exist
    pkg = unique("nopkg")
    assert_error(await put(client, f"{pkg}/a", node_action()), 404, NOT_FOUND)
    # Then nothing was written
    assert_error(await get(client, f"{pkg}/a"), 404, NOT_FOUND)


async def test_list_missing_package_is_404(client: httpx.AsyncClient, unique: Unique) -> None:
    assert_error(await client.get(f"{NS}/actions/{unique('nopkg')}/"), 404, NOT_FOUND)


# -- request validation -------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["-leading-dash", "a$b", "trailing ", "semi;colon", "a*"])
async def test_illegal_names_are_400(client: httpx.AsyncClient, bad: str) -> None:
    # When an action with an illegal name is created
    r = await put(client, bad, node_action())
    # Then 400 with OpenWhisk's text, and nothing was written
    assert_error(r, 400, ILLEGAL_NAME)
    listed = (await client.get(f"{NS}/actions", params={"limit": "0"})).json()
    assert bad not in {a["name"] for a in listed}


async def test_too_long_name_is_400(client: httpx.AsyncClient) -> None:
    name = "a" * 257
    assert_error(
        await put(client, name, node_action()), 400, "Entity name longer than allowed: 257 > 256."
    )
    # A name of exactly 256 characters is fine
    assert (await put(client, "b" * 256, node_action(), overwrite="true")).status_code == 200


async def test_unknown_kind_is_400(client: httpx.AsyncClient, unique: Unique) -> None:
    # When an action is created with a kind the platform does not have
    name = unique("kind")
    r = await put(client, name, {"exec": {"kind": "nodejs:1", "code": NODE_HELLO}})
    # Then 400 naming the runtime and the valid ones
    error = assert_error(r, 400)
    assert error.startswith(
        "The specified runtime 'nodejs:1' is not supported by this platform. Valid values are: "
    )
    assert "'nodejs:20'" in error
    assert "'python:3.11'" in error
    # And nothing was written
    assert_error(await get(client, name), 404, NOT_FOUND)


async def test_unknown_kind_on_update_leaves_the_action_unchanged(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    name = unique("kindupd")
    await put(client, name, node_action())
    r = await put(client, name, {"exec": {"kind": "cobol:1", "code": "x"}}, overwrite="true")
    assert_error(r, 400)
    action = (await get(client, name)).json()
    assert action["version"] == "0.0.1"
    assert action["exec"]["kind"] == "nodejs:20"


@pytest.mark.parametrize("body", [b"{not json", b'{"exec": ', b"[1, 2"])
async def test_malformed_json_is_400(
    client: httpx.AsyncClient, unique: Unique, body: bytes
) -> None:
    # When the body is not JSON
    name = unique("malformed")
    r = await client.put(
        f"{NS}/actions/{name}", content=body, headers={"Content-Type": "application/json"}
    )
    # Then 400 "The request content was malformed..." and nothing was written
    assert assert_error(r, 400).startswith("The request content was malformed")
    assert_error(await get(client, name), 404, NOT_FOUND)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"exec": "code"},
        {"exec": {"kind": "nodejs:default"}},
        {"exec": {"code": NODE_HELLO}},
        [1, 2],
        {"exec": {"kind": "nodejs:default", "code": NODE_HELLO}, "parameters": {"a": 1}},
        {"exec": {"kind": "nodejs:default", "code": NODE_HELLO}, "publish": "yes"},
    ],
)
async def test_malformed_action_is_400(
    client: httpx.AsyncClient, unique: Unique, body: Any
) -> None:
    # When the JSON is valid but not a valid action / Then 400 and nothing was written
    name = unique("shape")
    assert assert_error(await put(client, name, body), 400).startswith(
        "The request content was malformed"
    )
    assert_error(await get(client, name), 404, NOT_FOUND)


@pytest.mark.parametrize(
    ("limits", "needle"),
    [
        ({"timeout": 99}, "100"),
        ({"timeout": 300_001}, "300000"),
        ({"memory": 127}, "128"),
        ({"memory": 513}, "512"),
        ({"logs": 11}, "10"),
        ({"logs": -1}, "0"),
        ({"concurrency": 0}, "1"),
        ({"memory": "big"}, "memory"),
        ({"timeout": 1.5}, "timeout"),
    ],
)
async def test_invalid_limits_are_400(
    client: httpx.AsyncClient, unique: Unique, limits: dict[str, Any], needle: str
) -> None:
    # Given an existing action at 0.0.1
    name = unique("limits")
    await put(client, name, node_action())
    # When it is created or updated with a limit out of range or of the wrong type
    created = await put(client, unique("limits-new"), node_action(limits=limits))
    updated = await put(client, name, {"limits": limits}, overwrite="true")
    # Then 400 naming the bound (or the field), and nothing changed
    for r in (created, updated):
        error = assert_error(r, 400)
        assert error.startswith("The request content was malformed")
        assert needle in error
    action = (await get(client, name)).json()
    assert action["version"] == "0.0.1"
    assert action["limits"] == DEFAULT_LIMITS


async def test_limits_at_the_bounds_are_accepted(client: httpx.AsyncClient, unique: Unique) -> None:
    for limits in (
        {"timeout": 100, "memory": 128, "logs": 0, "concurrency": 1},
        {"timeout": 300_000, "memory": 512, "logs": 10},
    ):
        r = await put(client, unique("bounds"), node_action(limits=limits), overwrite="true")
        assert r.status_code == 200, r.text
        assert r.json()["limits"] == {**DEFAULT_LIMITS, **limits}


async def test_python_action_round_trip(client: httpx.AsyncClient, unique: Unique) -> None:
    name = unique("pyrt")
    await put(client, name, python_action())
    assert (await get(client, name)).json()["exec"]["code"] == PY_HELLO
