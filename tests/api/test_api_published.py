"""Published packages: another namespace may read and invoke them, nothing more; and the
``final`` annotation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from apisupport import BASE_URL, FORBIDDEN, NS, assert_error, node_action

from squall.cli.standalone import Standalone
from squall.errors import Conflict

pytestmark = pytest.mark.anyio

ECHO = "function main(p) { return p; }"


@pytest.fixture
async def other(system: Standalone) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a second namespace, ``other``, on the same platform."""
    try:
        subject = await system.store.auth.create_subject("other")
    except Conflict:  # the module's platform already has it
        subject = await system.store.auth.create_subject("other", rotate=True)
    uuid, key = subject.auth.split(":", 1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=system.app), base_url=BASE_URL, auth=(uuid, key)
    ) as client:
        yield client


async def _package(client: httpx.AsyncClient, name: str, publish: bool) -> None:
    body = {"publish": publish, "parameters": [{"key": "from", "value": "package"}]}
    assert (await client.put(f"{NS}/packages/{name}", json=body)).status_code == 200
    r = await client.put(f"{NS}/actions/{name}/echo", json=node_action(ECHO))
    assert r.status_code == 200, r.text


async def test_published_package_is_readable_and_invocable_by_others(
    client: httpx.AsyncClient, other: httpx.AsyncClient, unique: Callable[[str], str]
) -> None:
    # Given a published package of the guest with an action
    pkg = unique("pub")
    await _package(client, pkg, publish=True)
    # When another namespace reads and invokes it through /namespaces/guest
    base = "/api/v1/namespaces/guest"
    got = await other.get(f"{base}/packages/{pkg}")
    assert got.status_code == 200 and got.json()["actions"][0]["name"] == "echo"
    listed = await other.get(f"{base}/actions/{pkg}/")
    assert [a["name"] for a in listed.json()] == ["echo"]
    r = await other.post(
        f"{base}/actions/{pkg}/echo", params={"blocking": "true", "result": "true"}, json={"x": 1}
    )
    # Then it runs with the package's parameters, recorded in the caller's namespace
    assert r.status_code == 200, r.text
    assert r.json() == {"from": "package", "x": 1}
    activations = (await other.get("/api/v1/namespaces/_/activations")).json()
    assert activations and activations[0]["namespace"] == "other"
    # And it is read-only to them
    assert_error(
        await other.put(f"{base}/actions/{pkg}/echo", json=node_action(ECHO)), 403, FORBIDDEN
    )
    assert_error(await other.delete(f"{base}/packages/{pkg}"), 403, FORBIDDEN)
    # And listing the guest's packages shows the published ones only
    names = [p["name"] for p in (await other.get(f"{base}/packages")).json()]
    assert pkg in names


async def test_private_package_is_403_like_a_missing_one(
    client: httpx.AsyncClient, other: httpx.AsyncClient, unique: Callable[[str], str]
) -> None:
    pkg = unique("priv")
    await _package(client, pkg, publish=False)
    base = "/api/v1/namespaces/guest"
    for path in (f"packages/{pkg}", f"actions/{pkg}/echo", f"actions/{pkg}/", "packages/nope"):
        assert_error(await other.get(f"{base}/{path}"), 403, FORBIDDEN)
    r = await other.post(f"{base}/actions/{pkg}/echo", params={"blocking": "true"})
    assert_error(r, 403, FORBIDDEN)
    names = [p["name"] for p in (await other.get(f"{base}/packages")).json()]
    assert pkg not in names


async def test_binding_to_a_published_package_of_another_namespace(
    client: httpx.AsyncClient, other: httpx.AsyncClient, unique: Callable[[str], str]
) -> None:
    # Given the guest's published package and another namespace binding it
    pkg = unique("bindme")
    await _package(client, pkg, publish=True)
    body = {
        "binding": {"namespace": "guest", "name": pkg},
        "parameters": [{"key": "b", "value": 2}],
    }
    r = await other.put(f"{NS}/packages/mine", json=body, params={"overwrite": "true"})
    assert r.status_code == 200, r.text
    # When it invokes through its binding / Then package < binding < payload
    r = await other.post(
        f"{NS}/actions/mine/echo", params={"blocking": "true", "result": "true"}, json={"c": 3}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"from": "package", "b": 2, "c": 3}


async def test_binding_to_a_private_package_of_another_namespace_is_403(
    client: httpx.AsyncClient, other: httpx.AsyncClient, unique: Callable[[str], str]
) -> None:
    pkg = unique("nobind")
    await _package(client, pkg, publish=False)
    body = {"binding": {"namespace": "guest", "name": pkg}}
    assert_error(await other.put(f"{NS}/packages/{unique('b')}", json=body), 403, FORBIDDEN)


async def test_final_parameters_cannot_be_overridden(
    client: httpx.AsyncClient, unique: Callable[[str], str]
) -> None:
    # Given an action whose parameters are final
    name = unique("final")
    body = node_action(
        ECHO,
        parameters=[{"key": "region", "value": "eu"}, {"key": "open", "value": None}],
        annotations=[{"key": "final", "value": True}],
    )
    assert (await client.put(f"{NS}/actions/{name}", json=body)).status_code == 200
    url = f"{NS}/actions/{name}"
    # When the payload overrides a defined one / Then 400 and nothing runs
    r = await client.post(url, params={"blocking": "true"}, json={"region": "us"})
    assert_error(
        r, 400, "Request defines parameters that are not allowed (e.g., reserved properties)."
    )
    # And parameters without a value, or new ones, are fine
    r = await client.post(
        url, params={"blocking": "true", "result": "true"}, json={"open": 1, "x": 2}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"region": "eu", "open": 1, "x": 2}
