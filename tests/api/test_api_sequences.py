"""Sequences through the API: storing one (and every bad input), and the entity's JSON.

Running sequences is in ``test_api_sequences_run.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from apisupport import (
    BASE_URL,
    FORBIDDEN,
    GUEST,
    NOT_FOUND,
    NS,
    annotation,
    assert_error,
    node_action,
)

from squall.cli.standalone import Standalone
from squall.errors import Conflict

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
ECHO = "function main(p) { return p; }"
TOO_LONG = "Too many actions in the sequence."
NO_COMPONENT = "No component specified for the sequence."
CYCLIC = "Sequence may not refer to itself."
MISSING = "Sequence component does not exist."
MALFORMED = (
    "The request content was malformed:\nThe fully qualified name of the entity must contain "
    "at least the namespace and the name of the entity."
)


def sequence(*components: str, **extra: Any) -> dict[str, Any]:
    return {"exec": {"kind": "sequence", "components": list(components)}, **extra}


async def put(
    client: httpx.AsyncClient, name: str, body: dict[str, Any], **params: str
) -> httpx.Response:
    return await client.put(f"{NS}/actions/{name}", json=body, params=params)


async def echo(client: httpx.AsyncClient, name: str) -> str:
    """Create an echo action ``name`` (``pkg/name`` too); its fully qualified name."""
    r = await put(client, name, node_action(ECHO))
    assert r.status_code == 200, r.text
    return f"/{GUEST}/{name}"


@pytest.fixture
async def stranger(system: Standalone) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a second namespace, ``stranger``, on the same platform."""
    try:
        subject = await system.store.auth.create_subject("stranger")
    except Conflict:  # the module's platform already has it
        subject = await system.store.auth.create_subject("stranger", rotate=True)
    uuid, key = subject.auth.split(":", 1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=system.app), base_url=BASE_URL, auth=(uuid, key)
    ) as c:
        yield c


async def test_create_get_and_list_a_sequence(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given an action and an action inside a package
    a, pkg, seq = unique("a"), unique("pkg"), unique("seq")
    assert (await client.put(f"{NS}/packages/{pkg}", json={})).status_code == 200
    await echo(client, a)
    await echo(client, f"{pkg}/b")
    # When a sequence of both is created, "_" and a missing leading slash included
    r = await put(client, seq, sequence(f"/_/{a}", f"{GUEST}/{pkg}/b"))
    # Then it is stored with fully qualified components and the exec annotation
    assert r.status_code == 200, r.text
    components = [f"/{GUEST}/{a}", f"/{GUEST}/{pkg}/b"]
    created = r.json()
    assert created["exec"] == {"kind": "sequence", "components": components}
    assert annotation(created, "exec") == "sequence"
    assert created["version"] == "0.0.1"
    # And its only parameter names its components, as in OpenWhisk
    assert created["parameters"] == [{"key": "_actions", "value": components}]
    # And GET (with or without code) shows the components; the list view only binary
    for code in ("true", "false"):
        got = await client.get(f"{NS}/actions/{seq}", params={"code": code})
        assert got.json()["exec"] == {"kind": "sequence", "components": components}
    listed = (await client.get(f"{NS}/actions", params={"limit": "0"})).json()
    [entry] = [e for e in listed if e["name"] == seq]
    assert entry["exec"] == {"binary": False}
    assert annotation(entry, "exec") == "sequence"


async def test_update_keeps_components_and_drops_given_parameters(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a sequence of one action
    a, b, seq = unique("a"), unique("b"), unique("seq")
    fqa, fqb = await echo(client, a), await echo(client, b)
    await put(client, seq, sequence(fqa))
    # When it is updated with parameters only / Then they are ignored, the version bumps
    r = await put(client, seq, {"parameters": [{"key": "x", "value": 1}]}, overwrite="true")
    assert r.status_code == 200, r.text
    assert r.json()["version"] == "0.0.2"
    assert r.json()["parameters"] == [{"key": "_actions", "value": [fqa]}]
    # When its components change / Then so does its one parameter
    r = await put(client, seq, sequence(fqb, fqa), overwrite="true")
    assert r.json()["exec"]["components"] == [fqb, fqa]
    assert r.json()["parameters"] == [{"key": "_actions", "value": [fqb, fqa]}]
    # When it becomes a code action / Then the sequence's parameter does not stay behind
    r = await put(client, seq, node_action(ECHO), overwrite="true")
    assert r.json()["exec"]["kind"] == "nodejs:20"
    assert r.json()["parameters"] == []
    assert annotation(r.json(), "exec") == "nodejs:20"


async def test_empty_sequence_is_400(client: httpx.AsyncClient, unique: Unique) -> None:
    seq = unique("seq")
    assert_error(await put(client, seq, sequence()), 400, NO_COMPONENT)
    assert_error(await client.get(f"{NS}/actions/{seq}"), 404, NOT_FOUND)


async def test_missing_component_is_400(client: httpx.AsyncClient, unique: Unique) -> None:
    seq = unique("seq")
    r = await put(client, seq, sequence(f"/{GUEST}/{unique('nothing')}"))
    assert_error(r, 400, MISSING)
    # Also inside a package that does not exist
    r = await put(client, seq, sequence(f"/_/{unique('nopkg')}/x"))
    assert_error(r, 400, MISSING)
    assert_error(await client.get(f"{NS}/actions/{seq}"), 404, NOT_FOUND)


@pytest.mark.parametrize("component", ["just-a-name", "/", "/a/b/c/d", "//x"])
async def test_malformed_component_is_400(
    client: httpx.AsyncClient, unique: Unique, component: str
) -> None:
    assert_error(await put(client, unique("seq"), sequence(component)), 400, MALFORMED)


async def test_components_must_be_an_array(client: httpx.AsyncClient, unique: Unique) -> None:
    r = await put(client, unique("seq"), {"exec": {"kind": "sequence", "components": "/_/a"}})
    assert_error(r, 400, "The request content was malformed:\n'components' must be an array")
    r = await put(client, unique("seq"), {"exec": {"kind": "sequence"}})
    assert_error(
        r,
        400,
        "The request content was malformed:\n'components' must be defined for sequence kind",
    )


async def test_more_components_than_the_limit_is_400(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an action / When a sequence lists it 51 times (the limit is 50) / Then 400
    fqa = await echo(client, unique("a"))
    seq = unique("seq")
    assert_error(await put(client, seq, sequence(*[fqa] * 51)), 400, TOO_LONG)
    # And exactly 50 is fine
    assert (await put(client, seq, sequence(*[fqa] * 50))).status_code == 200


async def test_too_many_actions_once_inlined_is_400(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a sequence of 30 actions
    fqa = await echo(client, unique("a"))
    inner = unique("inner")
    assert (await put(client, inner, sequence(*[fqa] * 30))).status_code == 200
    # When a sequence lists it twice (60 actions inlined) / Then 400
    outer = unique("outer")
    r = await put(client, outer, sequence(f"/_/{inner}", f"/_/{inner}"))
    assert_error(r, 400, TOO_LONG)


async def test_a_sequence_may_not_refer_to_itself(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # When a sequence lists itself / Then 400
    seq = unique("self")
    assert_error(await put(client, seq, sequence(f"/_/{seq}")), 400, CYCLIC)
    assert_error(await client.get(f"{NS}/actions/{seq}"), 404, NOT_FOUND)
    # When it is an action first and then updated to list itself / Then 400 too
    fqa = await echo(client, unique("a"))
    assert (await put(client, seq, sequence(fqa))).status_code == 200
    r = await put(client, seq, sequence(fqa, f"/_/{seq}"), overwrite="true")
    assert_error(r, 400, CYCLIC)


async def test_a_cycle_through_another_sequence_is_400(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given sequence A = [B] and sequence B = [a]
    fqa = await echo(client, unique("a"))
    seq_a, seq_b = unique("A"), unique("B")
    assert (await put(client, seq_b, sequence(fqa))).status_code == 200
    assert (await put(client, seq_a, sequence(f"/_/{seq_b}"))).status_code == 200
    # When B is updated to [A] / Then 400 and B is unchanged
    r = await put(client, seq_b, sequence(f"/_/{seq_a}"), overwrite="true")
    assert_error(r, 400, CYCLIC)
    assert (await client.get(f"{NS}/actions/{seq_b}")).json()["exec"]["components"] == [fqa]
    # And a code action that becomes a sequence reaching itself is caught too
    r = await put(client, fqa.rsplit("/", 1)[1], sequence(f"/_/{seq_a}"), overwrite="true")
    assert_error(r, 400, CYCLIC)


async def test_a_cycle_through_a_binding_is_400(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given a package with sequence s = [a] and a binding to the package
    pkg, bound = unique("pkg"), unique("bound")
    await client.put(f"{NS}/packages/{pkg}", json={})
    fqa = await echo(client, f"{pkg}/a")
    assert (await put(client, f"{pkg}/s", sequence(fqa))).status_code == 200
    binding = {"binding": {"namespace": GUEST, "name": pkg}}
    assert (await client.put(f"{NS}/packages/{bound}", json=binding)).status_code == 200
    # When s is updated to reach itself through the binding / Then 400
    r = await put(client, f"{pkg}/s", sequence(f"/_/{bound}/s"), overwrite="true")
    assert_error(r, 400, CYCLIC)


async def test_another_namespaces_private_action_is_403(
    client: httpx.AsyncClient, stranger: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a private action and a private package action of the guest
    a, pkg = unique("private"), unique("pkg")
    await echo(client, a)
    await client.put(f"{NS}/packages/{pkg}", json={})
    await echo(client, f"{pkg}/b")
    # When another namespace puts them (or a missing one) in a sequence / Then 403 alike
    for component in (f"/{GUEST}/{a}", f"/{GUEST}/{pkg}/b", f"/{GUEST}/{unique('nope')}/c"):
        r = await put(stranger, unique("seq"), sequence(component))
        assert_error(r, 403, FORBIDDEN)


async def test_a_published_package_action_may_be_a_component(
    client: httpx.AsyncClient, stranger: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a published package of the guest with an action
    pkg = unique("shared")
    await client.put(f"{NS}/packages/{pkg}", json={"publish": True})
    component = await echo(client, f"{pkg}/a")
    # When another namespace uses it in a sequence / Then it is stored
    seq = unique("seq")
    r = await put(stranger, seq, sequence(component))
    assert r.status_code == 200, r.text
    assert r.json()["namespace"] == "stranger"
    # And it runs, recorded in the caller's namespace
    r = await stranger.post(
        f"{NS}/actions/{seq}", params={"blocking": "true", "result": "true"}, json={"x": 1}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"x": 1}
    # When the package stops being published / Then invoking the sequence is 403
    await client.put(f"{NS}/packages/{pkg}", json={"publish": False}, params={"overwrite": "true"})
    r = await stranger.post(f"{NS}/actions/{seq}", params={"blocking": "true"}, json={})
    assert_error(r, 403, FORBIDDEN)
