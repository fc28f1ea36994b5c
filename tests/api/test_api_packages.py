"""Packages: CRUD, contents, forced delete, reserved names and bindings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from apisupport import EXISTS, GUEST, NOT_FOUND, NS, annotation, assert_error, node_action

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]


async def put_package(
    client: httpx.AsyncClient, name: str, body: Any = None, **params: str
) -> httpx.Response:
    return await client.put(
        f"{NS}/packages/{name}", json={} if body is None else body, params=params
    )


async def test_create_and_get_with_contents(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given a package with a parameter
    pkg = unique("pkg")
    r = await put_package(client, pkg, {"parameters": [{"key": "p", "value": 1}]})
    assert r.status_code == 200, r.text
    created = r.json()
    # Then it is a plain package at 0.0.1
    assert created["namespace"] == GUEST
    assert created["name"] == pkg
    assert created["version"] == "0.0.1"
    assert created["binding"] == {}
    assert created["publish"] is False
    assert created["parameters"] == [{"key": "p", "value": 1}]
    # When it gets an action and a feed action
    await client.put(f"{NS}/actions/{pkg}/act", json=node_action())
    feed = node_action(annotations=[{"key": "feed", "value": True}])
    await client.put(f"{NS}/actions/{pkg}/changes", json=feed)
    # Then GET lists them under actions and feeds
    got = (await client.get(f"{NS}/packages/{pkg}")).json()
    assert got["name"] == pkg
    assert got["parameters"] == [{"key": "p", "value": 1}]
    assert [a["name"] for a in got["actions"]] == ["act"]
    assert [f["name"] for f in got["feeds"]] == ["changes"]
    assert got["actions"][0]["version"] == "0.0.1"
    assert annotation(got["actions"][0], "exec") == "nodejs:20"


async def test_empty_package_has_empty_contents(client: httpx.AsyncClient, unique: Unique) -> None:
    pkg = unique("empty")
    await put_package(client, pkg)
    got = (await client.get(f"{NS}/packages/{pkg}")).json()
    assert got["actions"] == []
    assert got["feeds"] == []


async def test_duplicate_update_list_count(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given a package
    pkg = unique("upd")
    await put_package(client, pkg, {"annotations": [{"key": "a", "value": 1}]})
    before = (await client.get(f"{NS}/packages", params={"count": "true"})).json()
    # When it is created again / Then 409
    assert_error(await put_package(client, pkg), 409, EXISTS)
    # When it is updated / Then the version is bumped and annotations merge
    r = await put_package(
        client, pkg, {"annotations": [{"key": "b", "value": 2}], "publish": True}, overwrite="true"
    )
    assert r.status_code == 200
    assert r.json()["version"] == "0.0.2"
    assert r.json()["publish"] is True
    assert annotation(r.json(), "a") == 1
    assert annotation(r.json(), "b") == 2
    # And it is listed; count is keyed by "packages" and did not change with the update
    listed = (await client.get(f"{NS}/packages", params={"limit": "0"})).json()
    assert pkg in {p["name"] for p in listed}
    assert (await client.get(f"{NS}/packages", params={"count": "true"})).json() == before
    assert set(before) == {"packages"}


async def test_delete_empty_package_returns_it(client: httpx.AsyncClient, unique: Unique) -> None:
    pkg = unique("del")
    await put_package(client, pkg)
    r = await client.delete(f"{NS}/packages/{pkg}")
    assert r.status_code == 200
    assert r.json()["name"] == pkg
    assert_error(await client.get(f"{NS}/packages/{pkg}"), 404, NOT_FOUND)
    assert_error(await client.delete(f"{NS}/packages/{pkg}"), 404, NOT_FOUND)


async def test_delete_non_empty_needs_force(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given a package with one action
    pkg = unique("full")
    await put_package(client, pkg)
    await client.put(f"{NS}/actions/{pkg}/a", json=node_action())
    # When it is deleted without force / Then 409 and both still exist
    r = await client.delete(f"{NS}/packages/{pkg}")
    assert_error(
        r,
        409,
        "Package not empty (contains 1 entities). Set force param or delete package contents.",
    )
    assert (await client.get(f"{NS}/packages/{pkg}")).status_code == 200
    assert (await client.get(f"{NS}/actions/{pkg}/a")).status_code == 200
    # When it is deleted with force=true / Then the package and its contents are gone
    r = await client.delete(f"{NS}/packages/{pkg}", params={"force": "true"})
    assert r.status_code == 200
    assert r.json()["name"] == pkg
    assert_error(await client.get(f"{NS}/packages/{pkg}"), 404, NOT_FOUND)
    assert_error(await client.get(f"{NS}/actions/{pkg}/a"), 404, NOT_FOUND)


async def test_default_is_a_reserved_name(client: httpx.AsyncClient) -> None:
    # When a package named "default" is created / Then 400 and it does not exist
    assert_error(await put_package(client, "default"), 400, "Package name 'default' is reserved.")
    assert_error(await client.get(f"{NS}/packages/default"), 404, NOT_FOUND)


async def test_illegal_package_name_is_400(client: httpx.AsyncClient) -> None:
    assert_error(
        await put_package(client, "bad$name"),
        400,
        "The name of the entity contains illegal characters.",
    )


# -- bindings ---------------------------------------------------------------------------


async def test_binding_to_missing_package_is_400(client: httpx.AsyncClient, unique: Unique) -> None:
    # When a binding references a package that does not exist
    name = unique("bind")
    body = {"binding": {"namespace": GUEST, "name": unique("missing")}}
    # Then 400 and no binding was written
    assert_error(
        await put_package(client, name, body),
        400,
        "Binding references a package that does not exist.",
    )
    assert_error(await client.get(f"{NS}/packages/{name}"), 404, NOT_FOUND)


async def test_binding_shows_the_bound_packages_contents(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a package with an action
    pkg, bound = unique("src"), unique("bound")
    await put_package(client, pkg)
    await client.put(f"{NS}/actions/{pkg}/a", json=node_action())
    # When a binding to it is created (namespace "_" means the caller's)
    r = await put_package(client, bound, {"binding": {"namespace": "_", "name": pkg}})
    # Then the binding names the resolved namespace and the package
    assert r.status_code == 200, r.text
    assert r.json()["binding"] == {"namespace": GUEST, "name": pkg}
    # And GET of the binding shows the bound package's actions
    got = (await client.get(f"{NS}/packages/{bound}")).json()
    assert got["binding"] == {"namespace": GUEST, "name": pkg}
    assert [a["name"] for a in got["actions"]] == ["a"]


async def test_binding_shows_the_bound_packages_parameters_under_its_own(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a package with two parameters and a binding that overrides one and adds one
    pkg, bound = unique("src"), unique("bound")
    await put_package(
        client, pkg, {"parameters": [{"key": "a", "value": "pkg"}, {"key": "b", "value": "pkg"}]}
    )
    own = [{"key": "b", "value": "binding"}, {"key": "c", "value": "binding"}]
    await put_package(
        client, bound, {"binding": {"namespace": GUEST, "name": pkg}, "parameters": own}
    )
    # When the binding is read
    got = (await client.get(f"{NS}/packages/{bound}")).json()
    # Then it shows the package's parameters with its own on top (OpenWhisk's inherit)
    assert got["name"] == bound
    assert {kv["key"]: kv["value"] for kv in got["parameters"]} == {
        "a": "pkg",
        "b": "binding",
        "c": "binding",
    }


async def test_binding_whose_package_is_gone_is_404(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a binding to a package, and the package deleted afterwards
    pkg, bound = unique("gone"), unique("orphan")
    await put_package(client, pkg)
    await put_package(client, bound, {"binding": {"namespace": GUEST, "name": pkg}})
    assert (await client.delete(f"{NS}/packages/{pkg}")).status_code == 200
    # When the binding is read / Then 404, as OpenWhisk's read of the bound package fails
    assert_error(await client.get(f"{NS}/packages/{bound}"), 404, NOT_FOUND)
    # And the binding itself is still there: it is listed and can be deleted
    listed = (await client.get(f"{NS}/packages", params={"limit": 200})).json()
    assert bound in [p["name"] for p in listed]
    assert (await client.delete(f"{NS}/packages/{bound}")).status_code == 200


async def test_binding_of_a_binding_is_409(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given a package and a binding to it
    pkg, first, second = unique("p"), unique("b1"), unique("b2")
    await put_package(client, pkg)
    await put_package(client, first, {"binding": {"namespace": GUEST, "name": pkg}})
    # When a binding to the binding is created / Then 409 and nothing was written
    r = await put_package(client, second, {"binding": {"namespace": GUEST, "name": first}})
    assert_error(r, 409, "Cannot bind to another package binding.")
    assert_error(await client.get(f"{NS}/packages/{second}"), 404, NOT_FOUND)


async def test_actions_cannot_be_put_into_a_binding(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    pkg, bound = unique("p"), unique("b")
    await put_package(client, pkg)
    await put_package(client, bound, {"binding": {"namespace": GUEST, "name": pkg}})
    r = await client.put(f"{NS}/actions/{bound}/a", json=node_action())
    assert_error(r, 400, "Operation not permitted on package binding.")
    assert_error(await client.get(f"{NS}/actions/{pkg}/a"), 404, NOT_FOUND)


async def test_package_cannot_become_a_binding(client: httpx.AsyncClient, unique: Unique) -> None:
    pkg, other = unique("p"), unique("o")
    await put_package(client, pkg)
    await put_package(client, other)
    r = await put_package(
        client, pkg, {"binding": {"namespace": GUEST, "name": other}}, overwrite="true"
    )
    assert_error(r, 400, "Resource is a package and cannot be converted into a binding.")
    assert (await client.get(f"{NS}/packages/{pkg}")).json()["binding"] == {}
